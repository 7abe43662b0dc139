"""Every Kafka topic footfall uses: its name, key, partition count and retention (see ARCHITECTURE.md).

Topics that feed faust tables are co-partitioned: the same partition count and the murmur2
partitioner (Java's, used by the collector and by aiokafka) put one key on one partition everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

FOREVER = -1
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    schema: str  # the schemas/ model of its values
    retention_ms: int = FOREVER
    compacted: bool = False

    @property
    def config(self) -> dict[str, str]:
        config = {"retention.ms": str(self.retention_ms)}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return config


@dataclass(frozen=True)
class Topics:
    prefix: str = "footfall"
    partitions: int = 4

    def _spec(
        self, name: str, key: str, schema: str, partitions: int | None = None, retention_ms: int = FOREVER, compacted: bool = False
    ) -> TopicSpec:
        return TopicSpec(f"{self.prefix}.{name}", partitions or self.partitions, key, schema, retention_ms, compacted)

    @property
    def raw(self) -> TopicSpec:
        """Accepted tracking calls, exactly as the collector acknowledged them: the source of truth."""
        return self._spec("raw", "device key (anonymousId, else userId)", "schemas.events.RawEvent")

    @property
    def sessioned(self) -> TopicSpec:
        """Events with their session, re-keyed by distinct id to meet the identity table."""
        return self._spec("sessioned", "distinct id", "schemas.events.EnrichedEvent", retention_ms=WEEK_MS)

    @property
    def enriched(self) -> TopicSpec:
        """Events with session and person: what the projector writes to `events`."""
        return self._spec("enriched", "distinct id", "schemas.events.EnrichedEvent")

    @property
    def sessions(self) -> TopicSpec:
        """Session updates (full state, versioned) and merges of sessions."""
        return self._spec("sessions", "device key", "schemas.sessions.SessionUpdate | SessionMerge")

    @property
    def identity_commands(self) -> TopicSpec:
        """The identity sequencer's input: one partition, so every merge decision is made in one order."""
        return self._spec("identity-commands", "distinct id", "schemas.identity.IdentityCommand", partitions=1)

    @property
    def identities(self) -> TopicSpec:
        """distinct id → person id, versioned; compacted to the latest mapping per distinct id."""
        return self._spec("identities", "distinct id", "schemas.identity.DistinctIdMapping", compacted=True)

    @property
    def persons(self) -> TopicSpec:
        """Person merges and the identity facts of persons (visitor number, identified, contact)."""
        return self._spec("persons", "person id", "schemas.identity.PersonMerge | PersonIdentity")

    @property
    def person_changes(self) -> TopicSpec:
        """The profile work, repartitioned by person id (projector → the persons' owners, and owner → owner for
        merges): one owner per partition folds each person, so projectors scale out. Its partition count is
        fixed for the life of the data (a person's row versions are its offsets there)."""
        return self._spec("person-changes", "person id", "schemas.person_changes.PersonChange", retention_ms=WEEK_MS)

    @property
    def profile_changes(self) -> TopicSpec:
        """The outbound stream: every change to a person (properties, tags, status, stage, lists, segments,
        companies, objects), for automations and webhooks (schemas/profile_changes.py); kept forever, so a
        replay rebuilds the `$` timeline events from it."""
        return self._spec("profile-changes", "person id", "schemas.profile_changes.ProfileChange")

    @property
    def webhooks(self) -> TopicSpec:
        """Webhook subscriptions, versioned (schemas/webhooks.py); compacted to the latest per webhook id."""
        return self._spec("webhooks", "webhook id", "schemas.webhooks.WebhookDefinition", partitions=1, compacted=True)

    @property
    def webhook_deliveries(self) -> TopicSpec:
        """Every attempt to deliver a change to a webhook (dispatcher → projector → webhook_deliveries); a
        `dead_lettered` one carries the change. Kept forever, as the dead-letter topic is."""
        return self._spec("webhook-deliveries", "webhook id", "schemas.webhooks.DeliveryAttempt")

    @property
    def dead_letter(self) -> TopicSpec:
        """Bad rows from every stage, with their reason; kept forever so they can be fixed and replayed."""
        return self._spec("dead-letter", "source id", "schemas.bad_rows.BadRow")

    @property
    def property_definitions(self) -> TopicSpec:
        """Custom property definitions, versioned (schemas/properties.py); compacted to the latest per name."""
        return self._spec("property-definitions", "property name", "schemas.properties.PropertyDefinition", partitions=1, compacted=True)

    @property
    def lifecycle_stages(self) -> TopicSpec:
        """Lifecycle stage definitions, versioned (schemas/stages.py); compacted to the latest per stage id."""
        return self._spec("lifecycle-stages", "stage id", "schemas.stages.StageDefinition", partitions=1, compacted=True)

    @property
    def lists(self) -> TopicSpec:
        """Static list definitions, versioned (schemas/lists.py); compacted to the latest per list id."""
        return self._spec("lists", "list id", "schemas.lists.ListDefinition", partitions=1, compacted=True)

    @property
    def segments(self) -> TopicSpec:
        """Segment definitions, versioned (schemas/segments.py); compacted to the latest per segment id."""
        return self._spec("segments", "segment id", "schemas.segments.SegmentDefinition", partitions=1, compacted=True)

    @property
    def segment_status(self) -> TopicSpec:
        """The segment evaluator's status per segment (last evaluated, duration, members, last error); compacted."""
        return self._spec("segment-status", "segment id", "schemas.segments.SegmentStatus", partitions=1, compacted=True)

    @property
    def configs(self) -> TopicSpec:
        """Every version of every dynamic config (management API → collectors, API); one partition, kept
        forever: the history. Readers replay it from the start and keep the highest version per key."""
        return self._spec("configs", "config key", "schemas.configs.ConfigVersion", partitions=1)

    @property
    def person_properties(self) -> TopicSpec:
        """The latest properties of each person (projector → collectors' config targeting); compacted,
        a tombstone when the person is merged away or deleted."""
        return self._spec("person-properties", "person id", "schemas.person_properties.PersonProperties", compacted=True)

    @property
    def person_segments(self) -> TopicSpec:
        """The segments each person is in now (segment evaluator → collectors' config targeting); compacted,
        a tombstone when the person is in none."""
        return self._spec("person-segments", "person id", "schemas.person_segments.PersonSegments", compacted=True)

    @property
    def user_commands(self) -> TopicSpec:
        """The management API's changes to users (create, update, delete, erase): applied by the projector."""
        return self._spec("user-commands", "person id", "schemas.user_commands.UserCommand")

    @property
    def company_commands(self) -> TopicSpec:
        """The management API's changes to companies and memberships: applied by the projector."""
        return self._spec("company-commands", "company id", "schemas.companies.CompanyCommand")

    @property
    def object_commands(self) -> TopicSpec:
        """The management API's changes to deals, tickets, activities and other objects (schemas/objects.py),
        keyed by "<type>:<object id>" so one object's commands stay in order: applied by the projector."""
        return self._spec("object-commands", "<type>:<object id>", "schemas.objects.ObjectCommand")

    @property
    def object_types(self) -> TopicSpec:
        """Object type definitions (stages, property definitions, stage effects), versioned; compacted to the latest per name."""
        return self._spec("object-types", "type name", "schemas.objects.ObjectTypeDefinition", partitions=1, compacted=True)

    @property
    def erasures(self) -> TopicSpec:
        """Erased identifiers (SHA-256 digests): the collector drops their calls, the projector their events."""
        return self._spec("erasures", "id digest", "schemas.user_commands.Erasure", partitions=1, compacted=True)

    def all(self) -> list[TopicSpec]:
        return [
            self.raw,
            self.sessioned,
            self.enriched,
            self.sessions,
            self.identity_commands,
            self.identities,
            self.persons,
            self.person_changes,
            self.profile_changes,
            self.dead_letter,
            self.configs,
            self.person_properties,
            self.person_segments,
            self.user_commands,
            self.company_commands,
            self.object_commands,
            self.object_types,
            self.erasures,
            self.property_definitions,
            self.lifecycle_stages,
            self.lists,
            self.segments,
            self.segment_status,
            self.webhooks,
            self.webhook_deliveries,
        ]
