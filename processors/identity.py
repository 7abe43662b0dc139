"""Identity resolution: which person each distinct id (anonymousId or userId) belongs to.

Pure: no I/O, no faust. The caller applies commands one at a time in the order of the
single-partition identity-commands topic and publishes each Resolution. Because every identity
decision goes through that one sequencer, merging ids that live on different event partitions
never races.

State lives in a key-value store (a faust table in production, a dict in tests), one small
JSON-serialisable value per key, so the changelog carries only what a command changed:

    "distinct_id:<id>"  -> the live person id of <id>; a merge re-points every id it moves,
                           so a lookup is one read and always gives the root person
    "person:<pid>"      -> {"visitor_number", "identified", "is_contact", "has_user_id", "version",
                            "merged_into", "distinct_ids"}; an absorbed person keeps its record
                           (merged_into set, no distinct ids) so its visitor number stays retired
    "counter:version"   -> the last version issued; ONE counter for every output
    "counter:visitor"   -> the last visitor number issued; never decreases, so never reused
    "counter:message"   -> how many commands were applied (drives the ring below)
    "recent:<slot>"     -> the message id in ring slot <slot> (count modulo recent_messages)
    "message:<mid>"     -> True while <mid> is among the last recent_messages commands
    "journal"           -> the last command's writes and outputs, written before them (see below)
    "email:<address>"   -> the person the management API created (or updated) with this email: tracking
                           that identifies a new user id with that email joins the person (`claim`)

Management API commands: `claim` founds the person (with the id the API chose) or finds it by its
distinct id, attaches a user id and claims an email; `forget` deletes a person: its ids and emails are
free again, its record stays as a tombstone ("deleted"), so a later sighting of the same id founds a
fresh person under another id (uuid5 of "<id>#<n>"): a deleted person id never comes back.

The identify guard (PostHog #5527, #11873) protects accounts: identify never joins two persons that
both have a user id. A second user logging in on a shared device gets a person of their own; a
visitor known only by an email may still log in to (merge into) an account. alias is unguarded.

Duplicates, two layers: (1) every state change is naturally idempotent (linking ids already in one
person, or learning facts already known, changes and emits nothing), so a duplicate can never
corrupt state however late it comes; (2) a bounded ring of recent message ids recognises a recent
redelivery, which is what at-least-once delivery produces. A redelivered command changes nothing and
repeats no warning, but it re-sends, as the state holds them now, the mapping of every distinct id of
the persons it names and those persons' identities: a worker killed after its state reached the
changelog but before its outputs left is redelivered that command, and this is how the lost mappings
still arrive. Each mapping keeps the version it was issued with ("mapping_version:<id>"), so the copy
is the same record downstream.

A command's writes are all-or-nothing. They reach the store (and its changelog) only after one
"journal" record that lists them, and its "message:<mid>" marker is the last of them. A worker that
dies part-way leaves a prefix of them in the changelog; the next command applied, which after a
restart is that same one again, first finds the journal without its marker, writes the rest and
re-sends the journal's outputs. Without this, a prefix could hold a mapping to a person whose record
never arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeGuard, overload

from schemas.bad_rows import Problem
from schemas.events import RawEvent
from schemas.identity import (  # is_illegal_id lives in schemas/: events decide their distinct id with it too
    CommandKind,
    DistinctIdMapping,
    IdentityCommand,
    PersonIdentity,
    PersonMerge,
    is_illegal_id,
    person_id_for,
)

# How many recent commands' message ids the ring remembers, to recognise a redelivery. Changing it re-slots the
# ring of a stored state (a slot is the command count modulo this). Person ids derive from
# schemas.identity.PERSON_NAMESPACE, and placeholder ids are schemas.identity.ILLEGAL_IDS.
RECENT_MESSAGES = 100_000

# Key identifying attributes: a person holding any of them can be contacted. Each kind is listed in
# IdentityCommand.contact_traits under the name on the left when one of the trait keys on the right
# holds a usable value (a non-placeholder string or number).
CONTACT_TRAITS = {
    "email": ("email",),
    "phone": ("phone",),
    "push_token": ("pushToken", "push_token"),
    "chat": ("whatsapp", "telegram", "messenger", "wechat"),
}

MergeReason = Literal["identify", "alias"]

_ID = "distinct_id:"
_MAPPING_VERSION = "mapping_version:"
_PERSON = "person:"
_MESSAGE = "message:"
_RECENT = "recent:"
_VERSION = "counter:version"
_VISITOR = "counter:visitor"
_APPLIED = "counter:message"
_JOURNAL = "journal"
_EMAIL = "email:"


@dataclass
class Resolution:
    """What one command decided; every record carries a fresh version, in the order issued."""

    mappings: list[DistinctIdMapping] = field(default_factory=list)
    merges: list[PersonMerge] = field(default_factory=list)
    persons: list[PersonIdentity] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [record.model_dump(mode="json") for record in getattr(self, name)] for name in _RESOLUTION_PARTS}

    @classmethod
    def from_json(cls, data: dict[str, list[dict[str, Any]]]) -> Resolution:
        return cls(
            mappings=[DistinctIdMapping.model_validate(r) for r in data["mappings"]],
            merges=[PersonMerge.model_validate(r) for r in data["merges"]],
            persons=[PersonIdentity.model_validate(r) for r in data["persons"]],
            warnings=[Problem.model_validate(r) for r in data["warnings"]],
        )

    def __add__(self, other: Resolution) -> Resolution:
        return Resolution(**{name: getattr(self, name) + getattr(other, name) for name in _RESOLUTION_PARTS})


_RESOLUTION_PARTS = ("mappings", "merges", "persons", "warnings")


class _Store(Protocol):
    """What a command reads and writes: the store itself, or the store staged (_Staged)."""

    def __getitem__(self, key: str, /) -> Any: ...
    def __setitem__(self, key: str, value: Any, /) -> None: ...
    def __delitem__(self, key: str, /) -> None: ...
    @overload
    def get(self, key: str, /) -> Any: ...
    @overload
    def get(self, key: str, default: Any, /) -> Any: ...


class _Staged:
    """The store as one command sees it: reads fall through to the store, writes are held back (None stands
    for a deletion; no stored value is None) until the command is done and journalled."""

    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store
        self.writes: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.writes:
            if self.writes[key] is None:
                raise KeyError(key)
            return self.writes[key]
        return self.store[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.pop(key, None)  # re-inserted: the order of writes is the order of their last change
        self.writes[key] = value

    def __delitem__(self, key: str) -> None:
        _ = self[key]  # a missing key raises KeyError, as a mapping's deletion does
        self[key] = None  # via __setitem__: a deletion counts as a change


def _write_through(store: MutableMapping[str, Any], writes: Iterable[tuple[str, Any]]) -> None:
    for key, value in writes:
        if value is not None:
            store[key] = value
        elif key in store:
            del store[key]


@dataclass(frozen=True)
class _Facts:
    """What a command proves about its person. Flags only ever turn on, so a merge ORs them exactly."""

    identified: bool = False
    is_contact: bool = False
    has_user_id: bool = False  # what the identify guard looks at: an account, not just a known email

    @classmethod
    def of(cls, command: IdentityCommand, *, names_user_id: bool) -> _Facts:
        identified = names_user_id or bool(command.email)  # a user id and an email are contacts too
        return cls(identified=identified, is_contact=identified or bool(command.contact_traits), has_user_id=names_user_id)


_USER = _Facts(identified=True, is_contact=True, has_user_id=True)


def _next(store: _Store, counter: str) -> int:
    value: int = store.get(counter, 0) + 1
    store[counter] = value
    return value


class _Change:
    """One command's work: edits the store and collects what it emits.

    Person records are copied on first read and written back once, in finish(), so each changed
    person is emitted once with its final flags (and a faust table sees a real assignment).
    """

    def __init__(self, store: _Store, timestamp: datetime) -> None:
        self.store = store
        self.timestamp = timestamp
        self.out = Resolution()
        self.records: dict[str, dict[str, Any]] = {}
        self.changed: dict[str, None] = {}  # an ordered set of person ids

    def resolve(self, distinct_id: str) -> str | None:
        person_id: str | None = self.store.get(_ID + distinct_id)
        return person_id

    def record(self, person_id: str) -> dict[str, Any]:
        if person_id not in self.records:
            stored = self.store[_PERSON + person_id]
            self.records[person_id] = {**stored, "distinct_ids": list(stored["distinct_ids"])}
        return self.records[person_id]

    def legal(self, **ids: str | None) -> bool:
        """Warns about each missing or placeholder id; True when all are usable."""
        for name, value in ids.items():
            if is_illegal_id(value):
                reason = "missing" if value is None else f"{value!r} is a placeholder, not a distinct id; refused"
                self.out.warnings.append(Problem(field=name, reason=reason, rule="required" if value is None else "placeholder_id"))
        return not any(is_illegal_id(value) for value in ids.values())

    def fresh_person_id(self, distinct_id: str) -> str:
        """person_id_for(distinct_id), unless a deleted person had it: then the first free uuid5 of "<id>#<n>"."""
        person_id, generation = person_id_for(distinct_id), 0
        while self.store.get(_PERSON + person_id) is not None:
            generation += 1
            person_id = person_id_for(f"{distinct_id}#{generation}")
        return person_id

    def is_free(self, person_id: str | None) -> TypeGuard[str]:
        return person_id is not None and self.store.get(_PERSON + person_id) is None and person_id not in self.records

    def found(self, person_id: str) -> None:
        """A new person record, with the next visitor number and no distinct ids yet."""
        self.records[person_id] = {
            "visitor_number": _next(self.store, _VISITOR),
            "identified": False,
            "is_contact": False,
            "has_user_id": False,
            "version": 0,
            "merged_into": None,
            "distinct_ids": [],
        }
        self.changed[person_id] = None

    def ensure(self, distinct_id: str, facts: _Facts = _Facts(), founded_as: str | None = None) -> str:
        """The live person of distinct_id, founding one if the id is new (as `founded_as` when that id is free)."""
        person_id = self.resolve(distinct_id)
        if person_id is None:
            person_id = founded_as if self.is_free(founded_as) else self.fresh_person_id(distinct_id)
            self.found(person_id)
            self.attach(distinct_id, person_id)
        self.learn(person_id, facts)
        return person_id

    def attach(self, distinct_id: str, person_id: str) -> None:
        self.store[_ID + distinct_id] = person_id
        self.record(person_id)["distinct_ids"].append(distinct_id)
        self.changed[person_id] = None
        version = _next(self.store, _VERSION)
        self.store[_MAPPING_VERSION + distinct_id] = version
        self.out.mappings.append(DistinctIdMapping(distinct_id=distinct_id, person_id=person_id, version=version))

    def learn(self, person_id: str, facts: _Facts) -> None:
        record = self.record(person_id)
        before = (record["identified"], record["is_contact"], record.get("has_user_id", False))
        after = (before[0] or facts.identified, before[1] or facts.is_contact, before[2] or facts.has_user_id)
        if after != before:
            record.update(identified=after[0], is_contact=after[1], has_user_id=after[2])
            self.changed[person_id] = None

    def link(self, source: str, target: str, reason: MergeReason, guarded: bool) -> str | None:
        """Puts source's and target's ids in one person: an unknown id joins the other's person;
        otherwise source's person merges into target's. Returns the live person, or None if the
        merge guard refused (when guarded: both persons already have a user id, i.e. two accounts)."""
        if self.resolve(source) is None and self.resolve(target) is None:
            self.ensure(source)  # the older id founds the person
        source_person, target_person = self.resolve(source), self.resolve(target)
        if target_person is None:
            assert source_person is not None  # both unknown: ensure(source) founded it just above
            if guarded and self.record(source_person).get("has_user_id"):
                # A second user logging in on a shared device: their account starts its own person.
                self._refuse(source, target, source_person, "a new person for the new user id")
                self.ensure(target, _USER)
                return None
            self.attach(target, source_person)
            return source_person
        if source_person is None:
            self.attach(source, target_person)
            return target_person
        if source_person == target_person:
            return target_person
        if guarded and self.record(source_person).get("has_user_id") and self.record(target_person).get("has_user_id"):
            self._refuse(source, target, source_person, f"{target_person} stays separate")
            return None
        self.merge(source_person, target_person, reason)
        return target_person

    def _refuse(self, source: str, target: str, source_person: str, outcome: str) -> None:
        self.out.warnings.append(
            Problem(
                field="user_id",
                reason=f"{source!r} already belongs to person {source_person}, which has another user id; "
                f"identify never fuses two accounts ({outcome})",
                rule="merge_refused",
            )
        )

    def merge(self, from_person: str, into_person: str, reason: MergeReason) -> None:
        self.out.merges.append(
            PersonMerge(
                from_person=from_person,
                into_person=into_person,
                version=_next(self.store, _VERSION),
                reason=reason,
                timestamp=self.timestamp,
            )
        )
        absorbed = self.record(from_person)
        for distinct_id in absorbed["distinct_ids"]:  # includes ids of persons absorbed into from_person earlier
            self.attach(distinct_id, into_person)
        absorbed.update(distinct_ids=[], merged_into=into_person)
        self.changed[from_person] = None
        self.learn(
            into_person,
            _Facts(absorbed["identified"], absorbed["is_contact"], absorbed.get("has_user_id", False)),
        )

    def claimed_person(self, email: str | None) -> str | None:
        """The live person the API gave this email, if it has no user id yet (else identify's guard applies)."""
        for key in email_claim_keys(email):
            person_id: str | None = self.store.get(_EMAIL + key)
            while person_id is not None and self.record(person_id).get("merged_into"):
                person_id = self.record(person_id)["merged_into"]
            if person_id is not None and not self.record(person_id).get("has_user_id") and not self.record(person_id).get("deleted"):
                return person_id
        return None

    def claim_email(self, person_id: str, email: str) -> None:
        record = self.record(person_id)
        for key in email_claim_keys(email):
            owner = self.store.get(_EMAIL + key)
            if owner is not None and owner != person_id and not self.record(owner).get("deleted"):
                self.out.warnings.append(Problem(field="email", reason=f"already claimed by person {owner}; not claimed again", rule="merge_refused"))
                return
            self.store[_EMAIL + key] = person_id
            record.setdefault("emails", [])
            if key not in record["emails"]:
                record["emails"] = [*record["emails"], key]
        self.changed[person_id] = None

    def forget(self, person_id: str) -> None:
        """Delete a person: every distinct id unmapped (an is_deleted mapping each), emails unclaimed."""
        record = self.record(person_id)
        for distinct_id in record["distinct_ids"]:
            del self.store[_ID + distinct_id]
            if self.store.get(_MAPPING_VERSION + distinct_id) is not None:
                del self.store[_MAPPING_VERSION + distinct_id]
            version = _next(self.store, _VERSION)
            self.out.mappings.append(DistinctIdMapping(distinct_id=distinct_id, person_id=person_id, version=version, is_deleted=True))
        for key in record.get("emails", []):
            if self.store.get(_EMAIL + key) == person_id:
                del self.store[_EMAIL + key]
        record.update(distinct_ids=[], emails=[], deleted=True)
        self.changed[person_id] = None

    def finish(self) -> Resolution:
        for person_id in self.changed:
            record = self.records[person_id]
            record["version"] = _next(self.store, _VERSION)
            self.store[_PERSON + person_id] = record
            self.out.persons.append(_identity(person_id, record))
        return self.out


def _identity(person_id: str, record: dict[str, Any]) -> PersonIdentity:
    return PersonIdentity(
        person_id=person_id,
        visitor_number=record["visitor_number"],
        identified=record["identified"],
        is_contact=record["is_contact"],
        version=record["version"],
        merged_into=record["merged_into"],
        deleted=record.get("deleted", False),
    )


class IdentityResolver:
    """Applies identity commands to the store; see the module docstring for the layout and dedup."""

    def __init__(self, store: MutableMapping[str, Any], *, recent_messages: int = RECENT_MESSAGES) -> None:
        self._store = store
        self._recent_messages = recent_messages

    def resolve(self, distinct_id: str) -> str | None:
        """The live (root) person of distinct_id, or None if the id was never seen."""
        return self._store.get(_ID + distinct_id)

    def person(self, person_id: str) -> PersonIdentity | None:
        record = self._store.get(_PERSON + person_id)
        return None if record is None else _identity(person_id, record)

    def apply(self, command: IdentityCommand) -> Resolution:
        """Applies one command, in topic order; a recently applied message id re-sends what the state holds."""
        completed = self._complete_interrupted()
        if self._store.get(_MESSAGE + command.message_id):
            return completed + self._as_held(command)
        staged = _Staged(self._store)
        change = _Change(staged, command.timestamp)
        if command.kind == "seen":
            self._seen(change, command)
        elif command.kind == "claim":
            self._claim(change, command)
        elif command.kind == "forget":
            self._forget(change, command)
        elif command.kind == "identify":
            self._link(change, command, "anonymous_id", command.anonymous_id, "identify", guarded=True)
        else:
            self._link(change, command, "previous_id", command.previous_id, "alias", guarded=False)
        out = change.finish()
        self._remember(staged, command.message_id)  # last: its marker tells a complete command from a cut one
        self._store[_JOURNAL] = {"message_id": command.message_id, "writes": [[key, value] for key, value in staged.writes.items()], "out": out.as_json()}
        _write_through(self._store, staged.writes.items())
        return completed + out

    def _complete_interrupted(self) -> Resolution:
        """The rest of the last command's writes when a worker died part-way through them, and its outputs
        again (they may not have left either); nothing when it completed."""
        journal = self._store.get(_JOURNAL)
        if journal is None or self._store.get(_MESSAGE + journal["message_id"]):
            return Resolution()
        _write_through(self._store, journal["writes"])
        return Resolution.from_json(journal["out"])

    def _as_held(self, command: IdentityCommand) -> Resolution:
        """The current mappings and identities of the persons a redelivered command names (module docstring)."""
        out = Resolution()
        named = (command.distinct_id, command.user_id, command.anonymous_id, command.previous_id)
        persons = dict.fromkeys(p for p in (self.resolve(i) for i in named if i) if p is not None)
        for person_id in persons:
            record = self._store[_PERSON + person_id]
            for distinct_id in record["distinct_ids"]:
                version = self._store.get(_MAPPING_VERSION + distinct_id)
                if version is None:  # state written before mapping versions were kept: a new version, same mapping
                    version = self._store[_MAPPING_VERSION + distinct_id] = _next(self._store, _VERSION)
                out.mappings.append(DistinctIdMapping(distinct_id=distinct_id, person_id=person_id, version=version))
            out.persons.append(_identity(person_id, record))
        return out

    @staticmethod
    def _seen(change: _Change, command: IdentityCommand) -> None:
        if change.legal(distinct_id=command.distinct_id):
            assert command.distinct_id is not None  # legal: not missing
            is_user_id = command.user_id == command.distinct_id
            if is_user_id and change.resolve(command.distinct_id) is None and (claimed := change.claimed_person(command.email)):
                change.attach(command.distinct_id, claimed)  # the API's user with this email logs in
            change.ensure(command.distinct_id, _Facts.of(command, names_user_id=is_user_id))

    @staticmethod
    def _claim(change: _Change, command: IdentityCommand) -> None:
        """The API's create (person_id: the id it chose) or an identifier set by an update."""
        if not change.legal(distinct_id=command.distinct_id):
            return
        assert command.distinct_id is not None  # legal: not missing
        has_user_id = command.user_id is not None
        person = change.ensure(command.distinct_id, _Facts.of(command, names_user_id=has_user_id), founded_as=command.person_id)
        if person != command.person_id and change.is_free(command.person_id):
            # The id was taken between the API's check and now: the API's person folds into its holder.
            change.found(command.person_id)
            change.merge(command.person_id, person, "alias")
        if has_user_id and command.user_id != command.distinct_id and change.legal(user_id=command.user_id):
            assert command.user_id is not None  # legal: not missing
            owner = change.resolve(command.user_id)
            if owner is None:
                change.attach(command.user_id, person)
            elif owner != person:
                change.out.warnings.append(Problem(field="user_id", reason=f"already belongs to person {owner}; not claimed", rule="merge_refused"))
        if command.email:
            change.claim_email(person, command.email)

    @staticmethod
    def _forget(change: _Change, command: IdentityCommand) -> None:
        person_id = command.person_id
        record = change.store.get(_PERSON + person_id) if person_id else None
        while record is not None and record.get("merged_into"):  # merged since the API looked: the live person goes
            person_id = record["merged_into"]
            record = change.store.get(_PERSON + person_id)
        if record is None or record.get("deleted"):
            return  # deleted already (or never founded): nothing to forget
        assert person_id is not None  # a record was found under it
        change.forget(person_id)

    @staticmethod
    def _link(
        change: _Change,
        command: IdentityCommand,
        source_field: str,
        source: str | None,
        reason: MergeReason,
        guarded: bool,
    ) -> None:
        """identify (guarded: never fuses two identified persons, PostHog #5527, #11873) or alias.

        When one id is a placeholder nothing is linked, but the usable id still gets a person so its
        events have one; the traits are dropped, since it is unclear whose they are."""
        user_id = command.user_id
        if change.legal(**{source_field: source, "user_id": user_id}):
            assert source is not None and user_id is not None  # legal: neither is missing
            if guarded and change.resolve(user_id) is None and (claimed := change.claimed_person(command.email)):
                change.attach(user_id, claimed)  # the API's user with this email: the new user id joins them
            person = change.link(source, user_id, reason, guarded)
            if person is not None:
                change.learn(person, _Facts.of(command, names_user_id=True))
        elif user_id is not None and not is_illegal_id(user_id):
            change.ensure(user_id, _USER)
        elif source is not None and not is_illegal_id(source):
            change.ensure(source)

    def _remember(self, store: _Staged, message_id: str) -> None:
        slot = _RECENT + str(_next(store, _APPLIED) % self._recent_messages)
        evicted = store.get(slot)
        if evicted is not None and store.get(_MESSAGE + evicted) is not None:
            del store[_MESSAGE + evicted]
        store[slot] = message_id
        store[_MESSAGE + message_id] = True


def email_claim_keys(email: str | None) -> list[str]:
    """An email as claims store it: trimmed and lower-cased, and as a source with hash_emails sends it
    (`sha256:<hex>` of that form, ingest/privacy.py), so either form of the address finds the claim."""
    if not isinstance(email, str) or not email.strip():
        return []
    address = email.strip().lower()
    if address.startswith("sha256:"):
        return [address]
    return [address, "sha256:" + hashlib.sha256(address.encode()).hexdigest()]


def _usable(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and not is_illegal_id(str(value))


def commands_for(event: RawEvent, first_sighting: bool) -> list[IdentityCommand]:
    """The identity commands one raw event sends to the resolver.

    first_sighting: this is the first event the caller has seen from event.device_key.
    - an alias call: alias(previous_id -> user_id);
    - any call carrying both anonymous_id and user_id: identify(anonymous_id, user_id) with the
      contact traits (see CONTACT_TRAITS);
    - seen(device_key), marked as a user id when it is one, on a first sighting and for an identify
      call, unless the link above already names device_key (a link registers its ids itself).
      It carries the contact traits, so an identify without both ids still teaches them.
    Each command's message id is the event's plus ":<kind>", so a redelivered event dedups.
    """
    email = event.traits.get("email")
    traits = {
        "email": email if _usable(email) else None,
        "contact_traits": [
            kind for kind, keys in CONTACT_TRAITS.items() if any(_usable(event.traits.get(key)) for key in keys)
        ],
    }
    commands: list[IdentityCommand] = []
    linked: tuple[str | None, ...] = ()
    if event.type == "alias":
        linked = (event.previous_id, event.user_id)
        commands.append(_command(event, "alias", previous_id=event.previous_id, user_id=event.user_id))
    elif event.anonymous_id and event.user_id:
        linked = (event.anonymous_id, event.user_id)
        commands.append(_command(event, "identify", anonymous_id=event.anonymous_id, user_id=event.user_id, **traits))
    device = event.device_key
    if (first_sighting or event.type == "identify") and device not in linked:
        is_user_id = device == event.user_id
        commands.append(_command(event, "seen", distinct_id=device, user_id=device if is_user_id else None, **traits))
    return commands


def _command(event: RawEvent, kind: CommandKind, **fields: Any) -> IdentityCommand:
    return IdentityCommand(kind=kind, message_id=f"{event.message_id}:{kind}", timestamp=event.timestamp, **fields)
