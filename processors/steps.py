"""Each agent's work on what it was handed, as pure steps: events and state in, records and state out.

No faust, no Kafka: the topology (app.py) reads records into events and sends what a step returns through the
runtime (runtime.py), which envelopes each output topic's records per destination partition. So batch
handling is tested without a broker (tests/unit/test_steps.py), and a split of the same events into other
records or batches gives the same sessions and persons (tests/unit/test_steps_properties.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, NamedTuple, TypeVar

from processors.events import EventView, json_time
from processors.identity import IdentityResolver, commands_for
from processors.records import Keyed
from processors.sessionizer import (
    DeviceState,
    Session,
    SessionizerConfig,
    assign,
    close_expired,
    earliest_end,
    session_update_json,
)
from schemas.bad_rows import Problem
from schemas.identity import DistinctIdMapping, IdentityCommand, person_id_for
from schemas.sessions import SessionMerge

T = TypeVar("T")
S = TypeVar("S")  # what a state write is made "as" (faust: the record whose partition its changelog takes)
Record = tuple[bytes, bytes]  # key, value
PersonOf = Callable[[bytes], Mapping[str, Any] | None]  # distinct id → {"person_id", "version"} known now


def command_key(command: IdentityCommand) -> bytes:
    """The identity-commands key: the id the command is about."""
    return (command.distinct_id or command.user_id or "").encode()


def device_key(event: EventView) -> bytes:
    """The key a raw event's device state lives under (the collector's record key)."""
    return event.device_key.encode()


def distinct_key(event: EventView) -> bytes:
    """The key a sessioned event is re-keyed by, to meet its person-of entry."""
    return event.distinct_id.encode()


def mapping_key(mapping: DistinctIdMapping) -> bytes:
    """The identities key: the distinct id mapped."""
    return mapping.distinct_id.encode()


founded_person = lru_cache(maxsize=65_536)(person_id_for)  # the person an id would found: a uuid5, ids repeat


def stamped(event: EventView, key: bytes, person_of: PersonOf, **added: Any) -> bytes:
    """The event stamped with the person known now (or the one its distinct id would found)."""
    known = person_of(key)
    person_id = known["person_id"] if known else founded_person(event.distinct_id)
    return event.with_fields(**added, person_id=person_id)


@dataclass
class Sessionized(Generic[S]):
    """What a batch of raw events produced."""

    states: dict[bytes, tuple[DeviceState, S]] = field(default_factory=dict)  # new state per device, and its record
    enriched: list[Record] = field(default_factory=list)  # events whose distinct id is their device key
    sessioned: list[Record] = field(default_factory=list)  # the others, re-keyed by distinct id
    sessions: list[Record] = field(default_factory=list)  # each changed session's latest update, and merges
    identity_commands: list[Record] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0


class DecodedStates:
    """Device states as this worker last wrote them, decoded: a device seen again in a later batch skips
    decoding its JSON (a busy device's state is the largest). A state is used only while the table still holds
    the very bytes it was decoded from, so recovery or a rebalance can never serve a stale one."""

    def __init__(self, table: Mapping[bytes, bytes], capacity: int = 20_000):
        self.table, self.capacity = table, capacity
        self._decoded: dict[bytes, tuple[bytes, DeviceState]] = {}

    def state_of(self, key: bytes) -> DeviceState | None:
        stored = self.table.get(key)
        if stored is None:
            return None
        hit = self._decoded.get(key)
        if hit is not None and (hit[0] is stored or hit[0] == stored):
            return hit[1]
        return DeviceState.from_json(stored)

    def wrote(self, key: bytes, stored: bytes, state: DeviceState) -> None:
        if len(self._decoded) >= self.capacity:
            self._decoded.clear()  # bounded memory; the busiest devices come back first
        self._decoded[key] = (stored, state)


class PendingStates(Generic[S]):
    """A batch's new device states, held until the batch is done and then written once each: a busy device's
    state (up to 256 remembered message ids a session) is serialised and sent to the changelog once a batch,
    not once a slice. Reads see the batch's own states first. Holding them past a slice's outputs is safe: the
    batch is acknowledged only after they are written, so a crash replays it from the states it started with,
    and the replay makes the same outputs again, which downstream keys collapse."""

    def __init__(self, decoded: DecodedStates, capacity: int = 20_000):
        self.decoded, self.capacity = decoded, capacity
        self._pending: dict[bytes, tuple[DeviceState, S]] = {}

    def state_of(self, key: bytes) -> DeviceState | None:
        held = self._pending.get(key)
        return held[0] if held is not None else self.decoded.state_of(key)

    def __contains__(self, key: bytes) -> bool:
        """Whether a state of `key` is held: the table's is then not its latest, so nothing else may write it."""
        return key in self._pending

    def hold(self, states: Mapping[bytes, tuple[DeviceState, S]]) -> None:
        self._pending.update(states)

    @property
    def full(self) -> bool:
        """Bounded memory: a batch of many devices is written before it grows past `capacity` states."""
        return len(self._pending) >= self.capacity

    def take(self) -> dict[bytes, tuple[DeviceState, S]]:
        """The held states, to write now; none are held after."""
        taken, self._pending = self._pending, {}
        return taken


def sessionize(
    handed: Iterable[tuple[S, int, Iterable[Keyed[EventView]]]],
    state_of: Callable[[bytes], DeviceState | None],
    person_of: PersonOf,
    watermark: Callable[[int, datetime], datetime],
    config: SessionizerConfig,
) -> Sessionized[S]:
    """Raw events → sessions, per device, in event time; identity facts go to the sequencer.

    `state_of`: a device's state as stored (DecodedStates.state_of). `handed`: per record, what its state writes are made as, its partition and its events. Each device's
    state is read and written once per batch, and only a session's latest update leaves: it carries the
    whole session. A duplicate is re-sent downstream as its first copy was (its event time, its session's
    update): after a crash the state may hold an event whose outputs never left."""
    out: Sessionized[S] = Sessionized()
    states: dict[bytes, DeviceState | None] = {}
    changes: dict[bytes, dict[str, tuple[Session, str, str | None] | SessionMerge]] = {}
    for source, partition, events in handed:
        for keyed in events:
            key, event = keyed.key, keyed.event
            state = states[key] if key in states else states.setdefault(key, state_of(key))
            result = assign(state, event, watermark(partition, event.timestamp), config)
            states[key] = result.state
            out.states[key] = (result.state, source)
            out.duplicates += result.duplicate
            out.late += result.late and not result.duplicate

            added: dict[str, Any] = {"session_id": result.session_id, "session_seq": result.session_seq}
            if result.duplicate:
                added["timestamp"] = json_time(result.event_time)
            distinct = distinct_key(event)
            if distinct == key:  # same key, same partition: the person-of table is right here, no re-keying hop
                out.enriched.append((key, stamped(event, key, person_of, **added)))
            else:
                out.sessioned.append((distinct, event.with_fields(**added, person_id=None)))
            held = changes.setdefault(key, {})
            for merge in result.merges:
                held[f"merge:{merge.absorbed_session_id}"] = merge
            for change in result.changes:
                held[change[0].id] = change
            # "seen" at every session start (not only a device's first): cheap, and it survives a lost send.
            first_sighting = state is None or result.session_seq == 1 or result.duplicate
            for command in commands_for(event, first_sighting=first_sighting):
                out.identity_commands.append((command_key(command), command.model_dump_json().encode()))
    for key, held in changes.items():
        device = key.decode()
        for change in held.values():
            if isinstance(change, SessionMerge):
                out.sessions.append((key, change.model_dump_json().encode()))
            else:
                session, status, absorbed_into = change
                out.sessions.append((key, session_update_json(device, session, status, absorbed_into)))
    return out


class SessionEnds:
    """When each device's first session could end, noted with a fingerprint of the state's bytes (length and
    hash), so the idle-session tick decodes only the devices that may have a session to end instead of every
    device every tick (at tens of µs a state, a worker holding a million devices would spend more than the
    tick's interval decoding). A fingerprint, not the bytes: a store that hands out copies (RocksDB) would
    otherwise have every state held twice. A state whose fingerprint is not the noted one (recovery, a
    rebalance, a write not noted) is decoded, as every state was before."""

    def __init__(self, capacity: int = 1_000_000):
        self.capacity = capacity
        self._ends: dict[bytes, tuple[int, int, int | None]] = {}

    def note(self, key: bytes, stored: bytes | None, end: int | None) -> None:
        """`key`'s state is now `stored` (None: evicted), whose earliest session end is `end`."""
        if stored is None:
            self._ends.pop(key, None)
            return
        if len(self._ends) >= self.capacity:
            self._ends.clear()  # bounded memory: the next tick decodes every state once and notes them again
        self._ends[key] = (len(stored), hash(stored), end)

    def may_end(self, key: bytes, stored: bytes, horizon: int) -> bool:
        """Whether `stored`, `key`'s state, may hold a session that ends before `horizon`."""
        noted = self._ends.get(key)
        if noted is None or noted[0] != len(stored) or noted[1] != hash(stored):
            return True
        return noted[2] is not None and noted[2] < horizon


@dataclass
class Ended:
    """What closing idle sessions produced: state to write (None: evict the key), the ended sessions, and the
    earliest session end of every state it read (SessionEnds.note)."""

    states: dict[bytes, bytes | None] = field(default_factory=dict)
    sessions: list[Record] = field(default_factory=list)
    count: int = 0
    ends: dict[bytes, tuple[bytes | None, int | None]] = field(default_factory=dict)


def end_idle_sessions(held: Iterable[tuple[bytes, bytes]], watermark: datetime, config: SessionizerConfig) -> Ended:
    """End the sessions of the given devices that no on-time event can reach any more (bounded memory: a
    device left with no session leaves the table)."""
    out = Ended()
    for key, stored in held:
        state = DeviceState.from_json(stored)
        remaining, updates = close_expired(state, watermark, config)
        if not updates:
            out.ends[key] = (stored, earliest_end(state))
            continue
        out.states[key] = written = remaining.to_json() if remaining is not None else None
        out.ends[key] = (written, earliest_end(remaining) if remaining is not None else None)
        out.count += len(updates)
        out.sessions += [(key, update.model_dump_json().encode()) for update in updates]
    return out


@dataclass
class Resolved:
    identities: list[Record] = field(default_factory=list)  # compacted: one record per key, never enveloped
    persons: list[Record] = field(default_factory=list)
    warnings: list[tuple[Keyed[IdentityCommand], Problem]] = field(default_factory=list)  # each with its command


def resolve_identities(commands: Iterable[Keyed[IdentityCommand]], resolver: IdentityResolver) -> Resolved:
    """The identity sequencer's step: each command applied in order, its mappings and persons to publish."""
    out = Resolved()
    for keyed in commands:
        resolution = resolver.apply(keyed.event)
        out.identities += [(m.distinct_id.encode(), m.model_dump_json().encode()) for m in resolution.mappings]
        for message in (*resolution.merges, *resolution.persons):
            person = getattr(message, "into_person", None) or message.person_id
            out.persons.append((person.encode(), message.model_dump_json().encode()))
        out.warnings += [(keyed, warning) for warning in resolution.warnings]
    return out


def events_in(handed: Iterable[tuple[Any, int, Iterable[Keyed[T]]]]) -> Iterator[Keyed[T]]:
    """The events of a slice (records.EventSlices), in order, whatever records they came in."""
    for _source, _partition, events in handed:
        yield from events


def stamp_persons(events: Iterable[Keyed[EventView]], person_of: PersonOf) -> list[Record]:
    """Sessioned events → enriched: each stamped with the person known now; queries resolve later merges."""
    return [(keyed.key, stamped(keyed.event, keyed.key, person_of)) for keyed in events]


class PersonOfChange(NamedTuple):
    entry: dict[str, Any] | None  # None: forget the distinct id (its person was deleted)


def learn_person(mapping: DistinctIdMapping, known: Mapping[str, Any] | None) -> PersonOfChange | None:
    """The change a mapping makes to a distinct id's person-of entry, or None when what is known is as new or
    newer. A deleted person's id is forgotten: its later events get a stand-in until the id's fresh mapping."""
    newer = known is None or known["version"] < mapping.version
    if mapping.is_deleted:
        return PersonOfChange(None) if known is not None and newer else None
    return PersonOfChange({"person_id": mapping.person_id, "version": mapping.version}) if newer else None


def apply_state(table: MutableMapping[bytes, Any], key: bytes, value: Any) -> None:
    """Write a key's new state, or evict it (None)."""
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
