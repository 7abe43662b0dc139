"""Any split of the same events into envelopes (and of envelopes into batches) yields the same sessions, persons
and enriched events as one event per record: the processors' pure steps, end to end, without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import steps
from processors.events import read_event
from processors.identity import IdentityResolver
from processors.records import EventSlices, read_record
from processors.sessionizer import SessionizerConfig
from schemas.envelope import EnvelopeLimits, pack, pack_by_partition, partition_for
from schemas.events import RawEvent
from schemas.identity import DistinctIdMapping, IdentityCommand

PARTITIONS = 3
CONFIG = SessionizerConfig(gap=timedelta(minutes=30), allowed_lateness=timedelta(hours=2))
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
DEVICES = ["anon-a", "anon-b", "anon-c", "anon-d"]
USERS = [None, None, "user-1", "user-2"]


@st.composite
def streams(draw) -> list[bytes]:
    """Raw events as the collector writes them: several devices, some identified, some duplicates."""
    events: list[bytes] = []
    for n in range(draw(st.integers(1, 25))):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))  # a redelivered copy
            continue
        kind = draw(st.sampled_from(["page", "track", "identify", "alias"]))
        user = draw(st.sampled_from(USERS))
        device = draw(st.sampled_from(DEVICES))
        events.append(
            RawEvent(
                message_id=f"m{n}",
                type=kind,
                anonymous_id=None if kind == "alias" else device,
                user_id=user or ("user-1" if kind == "alias" else None),
                previous_id=device if kind == "alias" else None,
                timestamp=T0 + timedelta(minutes=draw(st.integers(0, 240))),
                received_at=T0,
                source_id="test",
                properties={"url": f"https://shop.example/{n}"} if kind == "page" else {},
                traits={"email": f"{user}@example.com"} if user and kind == "identify" else {},
            )
            .model_dump_json()
            .encode()
        )
    return events


@dataclass
class Pipeline:
    """The processors' steps wired as the topology wires them, tables as dicts, topics as lists."""

    device_sessions: dict[bytes, bytes] = field(default_factory=dict)
    person_of: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    identity_state: dict[str, Any] = field(default_factory=dict)
    watermarks: dict[int, datetime] = field(default_factory=dict)
    sessions: list[bytes] = field(default_factory=list)
    enriched: list[bytes] = field(default_factory=list)
    sessioned: list[tuple[int, Any]] = field(default_factory=list)
    commands: list[Any] = field(default_factory=list)

    def watermark(self, partition: int, at: datetime) -> datetime:
        self.watermarks[partition] = max(at, self.watermarks.get(partition, at))
        return self.watermarks[partition]

    def run(self, batches: list[list[tuple[int, Any]]], slice_events: int = 10**9, state_capacity: int = 20_000) -> None:
        """Each batch: records (partition, envelope) of raw, handled in slices of at most `slice_events` events
        as the runtime cuts them (records.EventSlices), device states held until the batch ends or `state_capacity`
        are held (steps.PendingStates); then everything downstream of them."""
        decoded = steps.DecodedStates(self.device_sessions)
        pending: steps.PendingStates[int] = steps.PendingStates(decoded, capacity=state_capacity)
        for batch in batches:
            slices = EventSlices(slice_events)
            full = [
                h for partition, envelope in batch for h in slices.add(partition, partition, read(envelope, partition, steps.device_key))
            ]
            for handed in [*full, slices.rest()]:
                self.sessionize(pending, handed)
                if pending.full:
                    self.write_states(pending, decoded)
            self.write_states(pending, decoded)
        self.downstream()

    def write_states(self, pending: steps.PendingStates, decoded: steps.DecodedStates) -> None:
        for key, (state, _) in pending.take().items():
            self.device_sessions[key] = stored = state.to_json()
            decoded.wrote(key, stored, state)

    def sessionize(self, pending: steps.PendingStates, handed: list) -> None:
        out = steps.sessionize(handed, pending.state_of, self.person_of.get, self.watermark, CONFIG)
        pending.hold(out.states)
        self.enriched += [value for _, value in out.enriched]
        self.sessions += [value for _, value in out.sessions]
        self.sessioned += list(pack_by_partition(out.sessioned, PARTITIONS))
        self.commands += [envelope for _, envelope in pack_by_partition(out.identity_commands, 1)]

    def downstream(self) -> None:
        resolver = IdentityResolver(self.identity_state)
        for envelope in self.commands:
            commands = read_record(
                None, envelope.value, envelope.headers, 0, 1, IdentityCommand.model_validate_json, steps.command_key, "IdentityCommand"
            ).events
            for key, value in steps.resolve_identities(commands, resolver).identities:
                change = steps.learn_person(DistinctIdMapping.model_validate_json(value), self.person_of.get(key))
                if change is not None:
                    steps.apply_state(self.person_of, key, change.entry)
        for partition, envelope in self.sessioned:
            self.enriched += [value for _, value in steps.stamp_persons(read(envelope, partition, steps.distinct_key), self.person_of.get)]

    def outcome(self) -> tuple:
        """What downstream keeps: each session's latest version, each event's session, each id's person."""
        latest: dict[str, dict] = {}
        for value in self.sessions:
            message = orjson.loads(value)
            key = message.get("session_id") or f"merge:{message['absorbed_session_id']}"
            if key not in latest or message["version"] >= latest[key]["version"]:
                latest[key] = message
        events = sorted({(e["message_id"], e["session_id"], e["session_seq"], e["timestamp"]) for e in map(orjson.loads, self.enriched)})
        persons = {key: known["person_id"] for key, known in self.person_of.items()}
        return latest, events, persons, {k: v for k, v in self.identity_state.items() if k != "journal"}


def read(envelope, partition: int, key_of) -> list:
    found = read_record(
        getattr(envelope, "key", None), envelope.value, envelope.headers, partition, PARTITIONS, read_event, key_of, "Event"
    )
    assert found.refusals == []
    return found.events


def by_partition(events: list[bytes]) -> dict[int, list[tuple[bytes, bytes]]]:
    """Each raw partition's events in order, as the collector would key them (by device)."""
    found: dict[int, list[tuple[bytes, bytes]]] = {}
    for payload in events:
        key = read_event(payload).device_key.encode()
        found.setdefault(partition_for(key, PARTITIONS), []).append((key, payload))
    return found


def one_event_per_record(events: list[bytes]) -> list[list[tuple[int, Any]]]:
    """The reference: one event per record, one record per batch (single-event records, no envelope)."""
    return [[(partition, _Single(key, payload))] for partition, items in by_partition(events).items() for key, payload in items]


@dataclass(frozen=True)
class _Single:
    """A record as before envelopes: one event, keyed by its device."""

    key: bytes
    value: bytes
    headers: None = None


def split(events: list[bytes], sizes: list[int], per_batch: list[int]) -> list[list[tuple[int, Any]]]:
    """The same events in envelopes of the given sizes, and those envelopes in batches of the given sizes."""
    batches: list[list[tuple[int, Any]]] = []
    for n, (partition, items) in enumerate(by_partition(events).items()):
        payloads = [payload for _, payload in items]
        envelopes, at = [], 0
        while at < len(payloads):
            size = sizes[(n + len(envelopes)) % len(sizes)]
            envelopes += [(partition, e) for e in pack(payloads[at : at + size], EnvelopeLimits(max_events=size))]
            at += size
        while envelopes:
            take = per_batch[len(batches) % len(per_batch)]
            batches.append(envelopes[:take])
            envelopes = envelopes[take:]
    return batches


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.lists(st.integers(1, 8), min_size=1, max_size=5),
    st.lists(st.integers(1, 4), min_size=1, max_size=5),
    st.integers(1, 30),
    st.integers(1, 6),
)
def test_any_split_into_envelopes_batches_and_slices_gives_what_one_event_per_record_gives(
    events, sizes, per_batch, slice_events, state_capacity
):
    """Whatever the envelopes, batches and slices, and however many device states a batch holds before it writes them."""
    reference, enveloped = Pipeline(), Pipeline()
    reference.run(one_event_per_record(events))
    enveloped.run(split(events, sizes, per_batch), slice_events, state_capacity)
    assert enveloped.outcome() == reference.outcome()
