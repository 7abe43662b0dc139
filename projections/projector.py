"""Kafka → ClickHouse: consume what the processors decided, insert it in batches, commit offsets after.

    enriched      ─► events (+ event_counts_daily through a materialized view)
    sessions      ─► sessions, session_overrides
    identities    ─► person_distinct_ids
    persons       ─► person_overrides, persons (and each changed person on person-properties, for configs)
    user-commands ─► persons (creates, updates), row removals (deletes, erasures), user_commands, erasures,
                     stage_history and list_members (with each persons row written)
    lifecycle-stages, lists ─► lifecycle_stages, lists (the definitions)
    company-commands, group calls on enriched ─► companies, company_members (after persons), company_commands
    profile-changes ─► a `$` event per change in events (the timeline), segment_members (segment enter/exit)
    webhook-deliveries ─► webhook_deliveries (each attempt the webhook dispatcher recorded)
    (persons' changes) ─► profile-changes: what each batch changed (projections/profile_diff.py), before its rows
    object-commands ─► objects, object_links (after removals), object_commands; each change of a linked user's
                     object onto profile-changes (live only: a replay finds them on that topic already)
    dead-letter   ─► bad_rows (a dead-letter message that cannot be read becomes a poison_message row itself)

After each batch's persons rows, the lifecycle stages' rules (followed whole from lifecycle-stages) decide
forward moves; each is a command on user-commands, applied like the API's (projections/groups.py). A replay
does not decide again: the moves are in the command log already.

The management API's commands are read in full before anything else (projections/directory.py), so
deletes, erasures and disabled users are known before the events they concern, live and in a replay.

Batches are bounded by rows and seconds. Offsets are committed only once ClickHouse accepted the whole
batch, so a crash replays it; every table's replacing key (or uniqExact state) makes the replay collapse
into the rows already there: exactly once in effect. A batch ClickHouse refuses is retried with backoff
while nothing more is consumed: nothing is dropped and memory stays bounded by one batch.

A record may be an envelope of many events (schemas.envelope) or a single event (every record before
envelopes): each event is decoded on its own, so one unreadable event goes to the dead-letter topic alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from projections import metrics, rows
from projections.companies import COMPANY_COMMANDS, company_command_row, is_group_call
from projections.company_projection import CompaniesProjection, CompanyChanges
from projections.directory import Directory
from projections.groups import (
    LIFECYCLE_STAGES,
    LIST_MEMBERS,
    LISTS,
    STAGE_HISTORY,
    group_rows,
    lifecycle_stage_row,
    list_row,
    rule_commands,
)
from projections.objects import OBJECT_COMMANDS, ObjectsProjection, object_command_row
from projections.person_folder import PersonFolder
from projections.persons import PERSONS, PersonChanges, PersonsProjection
from projections.profile_change_rows import SEGMENT_MEMBERS, change_event_row, segment_member_row
from projections.profile_diff import Transition, changes_of, sources_of
from projections.profiles import person_properties_record
from projections.property_rules import screen, screen_group_call, violation_bad_row
from projections.removals import remove_person_rows
from projections.rows import Overrides, TableSpec, epoch_ms
from projections.webhook_deliveries import WEBHOOK_DELIVERIES, delivery_row
from schemas.bad_rows import Problem, poison_message, read_bad_row, stream_bad_row
from schemas.compacted import CompactedFollower, end_offset
from schemas.companies import CompanyCommand
from schemas.config import FootfallSettings
from schemas.envelope import EnvelopeError, unpack
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping, PersonIdentity, PersonMerge, person_message
from schemas.lists import ListDefinition
from schemas.objects import ObjectCommand
from schemas.profile_changes import ProfileChange
from schemas.properties import BUILT_IN, PropertyDefinition, effective
from schemas.sessions import SessionMerge, SessionUpdate, session_message
from schemas.stages import StageDefinition, StageRules, effective_stages
from schemas.topics import Topics
from schemas.user_commands import UserCommand
from schemas.webhooks import DeliveryAttempt

log = logging.getLogger(__name__)
T = TypeVar("T")
_RECEIVED_AT = rows.EVENTS.column_names.index("received_at")


@dataclass
class Batch:
    rows: dict[str, list[list]] = field(default_factory=lambda: defaultdict(list))
    bad_rows: list[bytes] = field(default_factory=list)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # what to commit
    persons: PersonChanges = field(default_factory=PersonChanges)
    removals: list[UserCommand] = field(default_factory=list)  # deletes and erasures, applied after the inserts
    companies: CompanyChanges = field(default_factory=CompanyChanges)
    objects: list[ObjectCommand] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    size: int = 0  # events (the batch's bound is on rows)
    records: int = 0

    def track(self, message: Message, events: int) -> None:
        position = (message.topic(), message.partition())
        self.first_offsets.setdefault(position, message.offset())
        self.next_offsets[position] = message.offset() + 1
        self.size += events
        self.records += 1

    def records_wanted(self, max_rows: int, at_most: int = 5_000) -> int:
        """How many more records to ask for: the rows still wanted, over the events per record seen so far."""
        per_record = max(1, self.size // self.records) if self.records else 1
        return max(1, min(max_rows - self.size, at_most) // per_record)

    def dedup_token(self, table: str) -> str:
        """Same offsets, same token: ClickHouse drops an identical retried insert."""
        ranges = ",".join(f"{t}/{p}:{self.first_offsets[(t, p)]}-{o}" for (t, p), o in sorted(self.next_offsets.items()))
        return hashlib.sha256(f"{table}|{ranges}".encode()).hexdigest()


def read_to_end(settings: FootfallSettings, topic: str, decode: Callable[[bytes], T], group: str, timeout_s: float = 60) -> list[T]:
    """Every record of a topic up to its end now, decoded (none when the topic does not exist yet; records
    `decode` refuses are skipped: dead-lettered when the projector reaches them)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        ends = {}
        for partition in metadata.partitions:
            end = end_offset(consumer, TopicPartition(topic, partition))
            if end > 0:
                ends[partition] = end
        consumer.assign([TopicPartition(topic, partition, 0) for partition in ends])
        records: list[T] = []
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                with contextlib.suppress(ValidationError, ValueError):
                    records.append(decode(message.value()))
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        return records
    finally:
        consumer.close()


def read_user_commands(settings: FootfallSettings, timeout_s: float = 60) -> list[UserCommand]:
    """Every command on the user-commands topic up to its end now (none when the topic does not exist yet)."""
    return read_to_end(
        settings, settings.topics.user_commands.name, UserCommand.model_validate_json, f"{settings.topic_prefix}-directory", timeout_s
    )


class RecordDecoder:
    """Records into a batch's rows, one small step per topic (no I/O: what it needs is handed in). Every event of an
    envelope is decoded on its own, so where the events were split into records changes nothing but their offsets."""

    def __init__(
        self, topics: Topics, session_overrides: Overrides, person_overrides: Overrides, directory: Directory, replaying: bool = False
    ):
        self.session_overrides = session_overrides
        self.person_overrides = person_overrides
        self.directory = directory
        self.replaying = replaying
        self.rules: dict[str, PropertyDefinition] = dict(BUILT_IN)  # the property definitions in force
        self.company_rules: dict[str, PropertyDefinition] = {}  # the company property definitions in force
        self.handlers: dict[str, Callable[[Batch, bytes, Message], None]] = {
            topics.enriched.name: self._on_event,
            topics.sessions.name: self._on_session_message,
            topics.identities.name: self._on_mapping,
            topics.persons.name: self._on_person_message,
            topics.dead_letter.name: self._on_bad_row,
            topics.user_commands.name: self._on_user_command,
            topics.lifecycle_stages.name: self._on_stage_definition,
            topics.lists.name: self._on_list_definition,
            topics.company_commands.name: self._on_company_command,
            topics.profile_changes.name: self._on_profile_change,
            topics.webhook_deliveries.name: self._on_delivery_attempt,
            topics.object_commands.name: self._on_object_command,
        }

    def _on_event(self, batch: Batch, value: bytes, message: Message) -> None:
        event = EnrichedEvent.model_validate_json(value)
        received = epoch_ms(event.received_at)
        person = self.person_overrides.live.get(event.person_id or "", event.person_id)
        group_call = None
        if is_group_call(event):
            group_call, refused = screen_group_call(event, self.company_rules)
            if not self.replaying:
                batch.bad_rows += [violation_bad_row(event, violation, origin_of(message)) for violation in refused]
        if self.directory.drops((event.distinct_id, event.anonymous_id, event.user_id), received, person):
            if group_call is not None:  # its traits describe the company, which stays; the membership went with the user
                batch.companies.company_writes.append(group_call)
            return  # deleted or erased through the management API
        if self.directory.status_at(person, received) == "disabled":
            event = event.model_copy(update={"flags": [*event.flags, "user_disabled"]})
        batch.rows[rows.EVENTS.name].append(rows.event_row(event, message.partition(), message.offset()))
        # The event is kept as it came; its profile writes that break a property definition are not.
        screened, violations = screen(event, self.rules)
        batch.persons.events.append(screened)
        if group_call is not None:
            batch.companies.group_calls.append(group_call)
        if not self.replaying:
            batch.bad_rows += [violation_bad_row(event, violation, origin_of(message)) for violation in violations]

    def _on_session_message(self, batch: Batch, value: bytes, message: Message) -> None:
        update = session_message.validate_json(value)
        if isinstance(update, SessionUpdate) and self.directory.drops((update.device_key, update.distinct_id), epoch_ms(update.start)):
            return
        if isinstance(update, SessionUpdate):
            batch.rows[rows.SESSIONS.name].append(rows.session_row(update))
            # Recount the person's sessions on every update, "ended" included: it may be the first update of a
            # session to arrive (one whose earlier updates a killed worker re-sent later, or never).
            batch.persons.session_keys.add(update.device_key)
        elif isinstance(update, SessionMerge):
            for absorbed, survivor in self.session_overrides.merge(update.absorbed_session_id, update.survivor_session_id):
                batch.rows[rows.SESSION_OVERRIDES.name].append(rows.session_override_row(absorbed, survivor, update.version))

    def _on_mapping(self, batch: Batch, value: bytes, message: Message) -> None:
        mapping = DistinctIdMapping.model_validate_json(value)
        if self.directory.erased(mapping.distinct_id):
            return  # an erased id is kept nowhere, not even as a deleted mapping
        batch.rows[rows.PERSON_DISTINCT_IDS.name].append(rows.mapping_row(mapping))
        batch.persons.distinct_ids.add(mapping.distinct_id)

    def _on_person_message(self, batch: Batch, value: bytes, message: Message) -> None:
        person = person_message.validate_json(value)
        if isinstance(person, PersonMerge) and (
            self.directory.is_deleted(person.into_person) or self.directory.is_deleted(person.from_person)
        ):
            return
        if isinstance(person, PersonMerge):
            for absorbed, survivor in self.person_overrides.merge(person.from_person, person.into_person):
                batch.rows[rows.PERSON_OVERRIDES.name].append(
                    rows.person_override_row(absorbed, survivor, person.timestamp, person.version)
                )
            batch.persons.merges.append(person)
        elif isinstance(person, PersonIdentity):
            batch.persons.identities.append(person)

    def _on_bad_row(self, batch: Batch, value: bytes, message: Message) -> None:
        """Never sent back to the dead-letter topic it came from: an unreadable one is recorded as it is."""
        try:
            row = read_bad_row(value or b"")
        except ValueError as exc:  # pydantic's ValidationError is one
            problem = Problem(field="message", reason=f"not a bad row: {exc}"[:500], rule="unreadable_message")
            row = stream_bad_row("poison_message", "projector", value, problem, origin_of(message))
        batch.rows[rows.BAD_ROWS.name].append(rows.bad_row_row(row, message.partition(), message.offset()))

    def _on_user_command(self, batch: Batch, value: bytes, message: Message) -> None:
        command = UserCommand.model_validate_json(value)
        self.directory.apply(command)
        batch.rows[rows.USER_COMMANDS.name].append(rows.user_command_row(command, time.time_ns() // 1_000_000))
        if command.kind in ("delete", "erase"):
            batch.removals.append(command)
        else:
            batch.persons.commands.append(command)
        if command.kind == "erase":
            batch.rows[rows.ERASURES.name].append(rows.erasure_row(command))

    def _on_stage_definition(self, batch: Batch, value: bytes, message: Message) -> None:
        if value:  # a tombstone (compaction's) carries nothing to keep
            batch.rows[LIFECYCLE_STAGES.name].append(lifecycle_stage_row(StageDefinition.model_validate_json(value)))

    def _on_list_definition(self, batch: Batch, value: bytes, message: Message) -> None:
        if value:
            batch.rows[LISTS.name].append(list_row(ListDefinition.model_validate_json(value)))

    def _on_company_command(self, batch: Batch, value: bytes, message: Message) -> None:
        command = CompanyCommand.model_validate_json(value)
        batch.companies.commands.append(command)
        batch.rows[COMPANY_COMMANDS.name].append(company_command_row(command, time.time_ns() // 1_000_000))

    def _on_profile_change(self, batch: Batch, value: bytes, message: Message) -> None:
        """Every change is a `$` row of the person's timeline; segment enters and exits are also membership periods.
        A deleted or erased person's changes are dropped (erasure sticks through a replay)."""
        change = ProfileChange.model_validate_json(value)
        if self.directory.is_deleted(change.person_id):
            return
        batch.rows[rows.EVENTS.name].append(change_event_row(change, message.partition(), message.offset()))
        if (member := segment_member_row(change)) is not None:
            batch.rows[SEGMENT_MEMBERS.name].append(member)

    def _on_delivery_attempt(self, batch: Batch, value: bytes, message: Message) -> None:
        batch.rows[WEBHOOK_DELIVERIES.name].append(delivery_row(DeliveryAttempt.model_validate_json(value)))

    def _on_object_command(self, batch: Batch, value: bytes, message: Message) -> None:
        command = ObjectCommand.model_validate_json(value)
        batch.objects.append(command)
        batch.rows[OBJECT_COMMANDS.name].append(object_command_row(command, time.time_ns() // 1_000_000))

    def add(self, batch: Batch, message: Message) -> None:
        """Every event of the record into the batch; an unreadable one (or envelope) to the dead-letter topic."""
        topic = message.topic()
        try:
            events = unpack(message.value(), message.headers())
        except EnvelopeError as exc:
            batch.track(message, 1)
            reason = f"unreadable envelope on {topic}: {exc.reason}"
            batch.bad_rows.append(poison_message("projector", message.value(), exc.rule, reason, origin_of(message)))
            return
        batch.track(message, len(events))
        handler = self.handlers[topic]
        for value in events:
            try:
                handler(batch, value, message)
            except (ValidationError, ValueError) as exc:
                batch.bad_rows.append(poison_message("projector", value, "message", f"unreadable on {topic}: {exc}", origin_of(message)))


class Projector:
    def __init__(self, settings: FootfallSettings, client: Client, group_id: str | None = None, replaying: bool = False):
        """`replaying`: a rebuild (projections/replay.py); the live projector already kept the bad rows it finds."""
        self.settings = settings
        self.replaying = replaying
        self.client = client
        self.database = settings.database
        topics = settings.topics
        self.stopping = threading.Event()
        self.committed: dict[tuple[str, int], int] = {}  # (topic, partition) → next offset, once in ClickHouse
        self.batch = Batch()
        self.refusals = 0  # times ClickHouse refused a write (each one retried)
        self.assigned = threading.Event()  # the group has given this projector its share of the partitions
        self.refused_now = False  # a write is being retried because ClickHouse refused it
        self.persons = PersonsProjection(client, settings.database)
        self.companies = CompaniesProjection(
            client, settings.database, settings.company_domain_membership, settings.company_domain_sources or None
        )
        self.objects = ObjectsProjection(client, settings.database)
        self.session_overrides = Overrides(self._load_overrides("session_overrides", "absorbed_session_id", "survivor_session_id"))
        self.person_overrides = Overrides(self._load_overrides("person_overrides", "from_person", "into_person"))
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group_id or f"{settings.topic_prefix}-projector",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # Also the rebalance timeout: after a crash, a rejoining group waits at most this long for a
                # member that will never come back. A write retried longer than this costs a rebalance and a
                # replay of the batch (collapsed by the replacing keys), not a stalled group.
                "max.poll.interval.ms": 60_000,
                "session.timeout.ms": int(settings.consumer_session_timeout_seconds * 1000),
            }
        )
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True})
        # Property definitions: the whole compacted topic, followed by every projector (no group).
        self.definitions = CompactedFollower(
            settings.kafka_bootstrap_servers, topics.property_definitions.name, PropertyDefinition.model_validate_json
        )
        # Lifecycle stages (their rules and order): the whole compacted topic, followed by every projector.
        self.stages = CompactedFollower(settings.kafka_bootstrap_servers, topics.lifecycle_stages.name, StageDefinition.model_validate_json)
        self.stage_rules = StageRules(effective_stages([]))
        self.directory = Directory().apply_all(read_user_commands(settings))
        self.decoder = RecordDecoder(topics, self.session_overrides, self.person_overrides, self.directory, replaying)
        # Partitioned profiles: this process also owns a share of the person-changes partitions. A replay is
        # one projector, and folds its own batches.
        self.folder = PersonFolder(settings, self.persons, self.directory, self) if settings.persons_partitioned and not replaying else None
        # With several projectors each owns some user-commands partitions; routing and owners need every
        # delete and status change: follow the whole topic too (Directory.apply is idempotent).
        self.commands = (
            CompactedFollower(settings.kafka_bootstrap_servers, topics.user_commands.name, self._learn_command) if self.folder else None
        )
        self.handlers = self.decoder.handlers  # the topics it reads

    def _learn_command(self, value: bytes) -> None:
        self.directory.apply(UserCommand.model_validate_json(value))  # a ValidationError is a ValueError: skipped

    def _load_overrides(self, table: str, absorbed: str, survivor: str) -> dict[str, str]:
        result = self.client.query(f"SELECT {absorbed}, {survivor} FROM {self.database}.{table} FINAL")
        return dict(result.result_rows)

    # -- the loop -----------------------------------------------------------------------------------------

    def follow_definitions(self, catch_up: bool = False) -> None:
        """The property definitions and lifecycle stages in force: all of them before the first batch, then what changed."""
        if self._follow(self.definitions, catch_up):
            self.decoder.rules = effective(self.definitions.values.values())
            self.decoder.company_rules = effective(self.definitions.values.values(), "company")
        if self._follow(self.stages, catch_up):
            self.stage_rules = StageRules(effective_stages(self.stages.values.values()))

    @staticmethod
    def _follow(follower: CompactedFollower, catch_up: bool) -> bool:
        """Whether the followed table may have changed (a topic not created yet: the built-ins only)."""
        try:
            changed = follower.catch_up() if catch_up else follower.poll()
        except LookupError:
            return False
        return bool(catch_up or changed)

    def follow_commands(self) -> None:
        if self.commands:
            with contextlib.suppress(LookupError):  # no user-commands topic yet
                self.commands.poll()

    def run(self) -> None:
        self.follow_definitions(catch_up=True)
        self.consumer.subscribe(list(self.handlers), on_assign=self._on_assign, on_revoke=self._on_revoke)
        if self.folder:
            self.folder.subscribe()
        try:
            while not self.stopping.is_set():
                self.follow_commands()
                self.fill(self.batch)
                self.flush()
                if self.folder:
                    self.folder.step()
            self.flush()
        finally:
            self.consumer.close()
            if self.folder:
                self.folder.close()
            if self.commands:
                self.commands.close()
            self.definitions.close()
            self.stages.close()
            self.producer.flush(10)

    def stop(self) -> None:
        self.stopping.set()

    def flush(self) -> None:
        """Write the batch in progress, then commit its offsets."""
        batch, self.batch = self.batch, Batch()
        if batch.records:
            self.write(batch)
            self.commit(batch)
            metrics.BATCH_MESSAGES.observe(batch.size)

    def _on_assign(self, _consumer, _partitions) -> None:
        self.assigned.set()

    def _on_revoke(self, _consumer, _partitions) -> None:
        self.assigned.clear()
        # Finish what was read from the partitions leaving us, so the next owner starts after it.
        self.flush()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """What an operator watches (GET /readyz on the read API): can an event move through this projector now?"""
        ready = self.assigned.is_set() and not self.refused_now and not self.stopping.is_set()
        return ready, {
            "consumer_group": "assigned" if self.assigned.is_set() else "joining",
            "clickhouse": "refusing writes" if self.refused_now else "accepting",
            "projector": "stopping" if self.stopping.is_set() else "running",
        }

    def fill(self, batch: Batch) -> None:
        """Consume into the batch until it holds enough rows or is old enough."""
        deadline = batch.started + self.settings.batch_max_seconds
        self.follow_definitions()
        while not self.stopping.is_set() and batch is self.batch and batch.size < self.settings.batch_max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wanted = batch.records_wanted(self.settings.batch_max_rows)
            for message in self.consumer.consume(wanted, timeout=min(remaining, 0.2)):
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer: %s", message.error().str())
                    continue
                self.decoder.add(self.batch, message)

    def write(self, batch: Batch) -> None:
        """Insert every table's rows; retry until ClickHouse accepts (backpressure, no drops)."""
        for bad in batch.bad_rows:
            self.producer.produce(self.settings.topics.dead_letter.name, bad)
        if batch.bad_rows and self.producer.flush(30) > 0:
            raise RuntimeError("the dead-letter topic did not acknowledge the projector's bad rows")
        # segment_members before events: once a `$segment_entered` row is on the timeline, the membership it
        # announces is readable too (a reader waiting for the one may read the other).
        order = (
            rows.PERSON_DISTINCT_IDS,
            rows.PERSON_OVERRIDES,
            rows.SESSION_OVERRIDES,
            SEGMENT_MEMBERS,
            rows.EVENTS,
            rows.SESSIONS,
            rows.BAD_ROWS,
            LIFECYCLE_STAGES,
            LISTS,
            WEBHOOK_DELIVERIES,
        )
        for table in order:
            if batch.rows.get(table.name):
                self._insert(table, batch.rows[table.name], batch.dedup_token(table.name))
        person_rows: list[list] = []  # what companies derive from (empty when the persons' owners fold them)
        if batch.persons and self.folder:
            # To the persons' owners, after the rows they count are written and before the offsets commit.
            routed = self._retrying(lambda: self.persons.route(batch.persons, self.person_overrides.live, self.directory))
            self.folder.publish(list(routed.values()))
        elif batch.persons:
            # Profiles last: they read the mappings, events and sessions written just above.
            person_rows, transitions = self._retrying(lambda: self.persons.fold(batch.persons, self.person_overrides.live, self.directory))
            self.write_persons(person_rows, batch.dedup_token, transitions, sources_of(batch.persons.events, batch.persons.commands))
        for command in batch.removals:
            self._retrying(
                lambda command=command: remove_person_rows(self.client, self.database, command), what=f"the rows of a {command.kind}"
            )
        self.publish_removed_persons(batch.removals)
        # Companies after persons and removals: derived links, member counts and last seen read the profiles.
        self._retrying(
            lambda: self.companies.project(
                batch.companies,
                person_rows,
                batch.persons.merges,
                batch.removals,
                self.person_overrides.live,
                self.directory,
                lambda table, data: self._insert(table, data, batch.dedup_token(table.name)),
                None if self.replaying else self.publish_profile_changes,
            ),
            what="the companies",
        )
        changes = self._retrying(
            lambda: self.objects.project(
                batch.objects,
                batch.persons.merges,
                batch.removals,
                self.person_overrides.live,
                self.directory,
                lambda table, data: self._insert(table, data, batch.dedup_token(table.name)),
            ),
            what="the objects",
        )
        if not self.replaying:
            self.publish_profile_changes(changes)
        # The command logs last: a command found there is readable (what ?wait=true waits for).
        for table in (rows.ERASURES, rows.USER_COMMANDS, COMPANY_COMMANDS, OBJECT_COMMANDS):
            if batch.rows.get(table.name):
                self._insert(table, batch.rows[table.name], batch.dedup_token(table.name))

    def write_persons(
        self,
        person_rows: list[list],
        token: Callable[[str], str],
        transitions: list[Transition] = (),  # type: ignore[assignment]  # read only
        sources: dict[str, str] | None = None,
    ) -> None:
        """Profile rows and what derives from them: the stage history and list memberships they carry, each
        person's properties for configs, and the stage rules' moves (decided live only: a replay has them in
        the command log). Used by this projector's own fold and by the persons' owner (partitioned profiles).
        What the rows change (`transitions`: each person's state before and after) goes out on profile-changes
        first, live only: once a row is written, a refold after a crash would see nothing left to change."""
        if not self.replaying:
            self.publish_profile_changes(changes_of(transitions, sources or {}, self.stage_rules.rank))
        self._insert(PERSONS, person_rows, token(PERSONS.name))
        history, members = group_rows(person_rows)
        self._insert(STAGE_HISTORY, history, token(STAGE_HISTORY.name))
        self._insert(LIST_MEMBERS, members, token(LIST_MEMBERS.name))
        self.publish_person_properties(person_rows)
        if not self.replaying:
            self.publish_stage_moves(person_rows)
        if self.folder is not None:
            # Partitioned profiles: the owner's rows are what derived memberships (by email domain), member
            # counts and last seen follow; the projector's own batches had no persons rows to give them.
            self._retrying(
                lambda: self.companies.project(
                    CompanyChanges(),
                    person_rows,
                    (),
                    (),
                    self.person_overrides.live,
                    self.directory,
                    lambda table, data: self._insert(table, data, token(table.name)),
                    None if self.replaying else self.publish_profile_changes,
                ),
                what="the companies of the owned persons",
            )

    def publish_person_properties(self, person_rows: list[list]) -> None:
        """Each changed person's properties on the compacted person-properties topic (configs' targeting
        reads them there, with no ClickHouse query), before the batch's offsets are committed: a crash
        re-sends them, and the highest version wins."""
        self._publish_properties([person_properties_record(row) for row in person_rows])

    def publish_stage_moves(self, person_rows: list[list]) -> None:
        """The stage rules' forward moves, as commands on user-commands (acknowledged before the batch's offsets
        are committed: a crash decides them again, with the same command ids)."""
        topic = self.settings.topics.user_commands.name
        moves = rule_commands(person_rows, self.stage_rules, datetime.now(UTC))
        for command in moves:
            self.producer.produce(topic, command.model_dump_json().encode(), command.person_id)
        if moves and self.producer.flush(30) > 0:
            raise RuntimeError("the user-commands topic did not acknowledge the stage rules' moves")

    def publish_profile_changes(self, changes: list[ProfileChange]) -> None:
        """The batch's profile changes on the outbound stream, keyed by person id, acknowledged before the batch's
        offsets are committed: a crash decides and sends them again, with the same change ids (consumers keep one)."""
        topic = self.settings.topics.profile_changes.name
        for change in changes:
            self.producer.produce(topic, change.model_dump_json().encode(), change.person_id)
        if changes and self.producer.flush(30) > 0:
            raise RuntimeError("the profile-changes topic did not acknowledge the projector's changes")
        metrics.PROFILE_CHANGES.inc(len(changes))

    def publish_removed_persons(self, removals: list) -> None:
        """A deleted or erased person's properties leave the compacted topic too (a tombstone)."""
        self._publish_properties([(command.person_id, None) for command in removals])

    def _publish_properties(self, records: list[tuple[str, bytes | None]]) -> None:
        topic = self.settings.topics.person_properties.name
        for key, value in records:
            self.producer.produce(topic, value, key)
        if records and self.producer.flush(30) > 0:
            raise RuntimeError("the person-properties topic did not acknowledge the projector's records")

    def _insert(self, table: TableSpec, data: list[list], token: str) -> None:
        if not data:
            return
        started = time.perf_counter()
        self._retrying(
            lambda: self.client.insert(
                f"{self.database}.{table.name}",
                data,
                column_names=table.column_names,
                column_type_names=table.column_types,
                settings={"insert_deduplication_token": token},
            ),
            what=f"{len(data)} rows for {table.name}",
        )
        metrics.INSERT_SECONDS.labels(table=table.name).observe(time.perf_counter() - started)
        metrics.ROWS_WRITTEN.labels(table=table.name).inc(len(data))
        if table is rows.EVENTS:
            metrics.observe_freshness(row[_RECEIVED_AT] for row in data)

    def _retrying(self, work, what: str = "a query"):
        """Run `work` until ClickHouse answers; not consuming meanwhile is the backpressure."""
        delay = 0.5
        while True:
            try:
                result = work()
                self.refused_now = False
                return result
            except ClickHouseError as exc:
                if self.stopping.is_set():
                    raise
                self.refusals += 1
                self.refused_now = True
                metrics.REFUSED_WRITES.inc()
                log.warning("ClickHouse refused %s (%s); retrying in %.1fs", what, exc, delay)
                self.stopping.wait(delay)  # librdkafka keeps the group membership alive meanwhile
                delay = min(delay * 2, 30)

    def commit(self, batch: Batch) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.committed.update(batch.next_offsets)
        except KafkaException as exc:
            # The group moved on (rebalance): the new owner replays from the last commit, and the
            # replacing keys collapse what this batch already wrote.
            metrics.COMMIT_FAILURES.inc()
            log.warning("offset commit refused (%s); the batch will be replayed and deduplicated", exc)


def origin_of(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"
