"""Reading one input record into the events it carries: pure, no faust, no I/O.

A record is an envelope (schemas/envelope.py) or, as every record written before envelopes, a single event.
An agent gets back the events it may handle, each with the key its state lives under, and the refusals that
go to the dead-letter topic, each with its own bytes and reason:
- a record that claims to be an envelope but cannot be read as one is refused whole;
- an event that does not decode is refused alone; the envelope's other events go on;
- an event of an envelope whose key belongs to another partition is refused: faust writes a table's changelog
  by the record's partition, so handling it here would put its state into another partition's.
A single-event record keeps today's behaviour: its state lives under the record's own key (Kafka put it where
that key belongs). EventSlices cuts what a batch of records carries into slices bounded by events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from schemas.envelope import EnvelopeError, Headers, is_envelope, partition_for, unpack

T = TypeVar("T")
S = TypeVar("S")  # what a slice's state writes are made as (faust: the record whose partition its changelog takes)


@dataclass(frozen=True)
class Refusal:
    """One payload an agent will not handle, and why: a bad row on the dead-letter topic."""

    key: bytes | None
    payload: bytes | None
    field: str
    reason: str


class Keyed(NamedTuple, Generic[T]):
    """An event to handle, with the key its state lives under and its own bytes (a tuple: one per event, and
    a frozen dataclass costs several times more to build)."""

    key: bytes
    event: T
    payload: bytes


@dataclass(frozen=True)
class Read(Generic[T]):
    events: list[Keyed[T]]
    refusals: list[Refusal]


def read_record(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    partition: int,
    partitions: int,
    decode: Callable[[bytes], T],
    key_of: Callable[[T], bytes],
    schema: str,
) -> Read[T]:
    """The events of one record that belong to `partition` (of a topic with `partitions`), in order.

    `decode` raises ValueError (pydantic's ValidationError is one) for an event it cannot read; `schema` names
    what was expected, for the bad row."""
    try:
        payloads = unpack(value, headers)
    except EnvelopeError as exc:
        return Read([], [Refusal(key, value, exc.rule, exc.reason)])
    enveloped = is_envelope(headers)
    events: list[Keyed[T]] = []
    refusals: list[Refusal] = []
    for payload in payloads:
        try:
            event = decode(payload)
        except ValueError as exc:
            refusals.append(Refusal(key, payload, schema, f"not a {schema}: {_first_reason(exc)}"))
            continue
        if not enveloped:
            events.append(Keyed(key or b"", event, payload))
            continue
        event_key = key_of(event)
        belongs = partition_for(event_key, partitions)
        if belongs != partition:
            refusals.append(
                Refusal(
                    event_key,
                    payload,
                    "envelope_partition",
                    f"the event's key belongs to partition {belongs}, the envelope is on partition {partition}",
                )
            )
            continue
        events.append(Keyed(event_key, event, payload))
    return Read(events, refusals)


Handed = tuple[S, int, Sequence[Keyed[Any]]]  # what a state write is made as, the record's partition, its events


class EventSlices(Generic[S]):
    """Cuts the records of a batch into slices of at most `max_events` events, across records and inside one.

    An envelope may hold thousands of events and a batch many envelopes: handled in one go, a batch would hold
    the event loop for seconds (heartbeats, other agents, the commit timer wait). A slice is what a step handles
    without yielding; the batch is still acknowledged as a whole, after its last slice's sends and state."""

    def __init__(self, max_events: int):
        if max_events < 1:
            raise ValueError("a slice holds at least one event")
        self.max_events = max_events
        self._pending: list[Handed[S]] = []
        self._count = 0

    def add(self, source: S, partition: int, events: Sequence[Keyed[Any]]) -> list[list[Handed[S]]]:
        """The slices that `events` fill up (each event in order, none left out); the rest waits for more."""
        full, start = [], 0
        while start < len(events):
            end = min(len(events), start + self.max_events - self._count)
            self._pending.append((source, partition, events[start:end] if start or end < len(events) else events))
            self._count += end - start
            start = end
            if self._count == self.max_events:
                full.append(self.rest())
        return full

    def rest(self) -> list[Handed[S]]:
        """What is left (empty when the last slice was full)."""
        pending, self._pending, self._count = self._pending, [], 0
        return pending


def _first_reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return str(found[0].get("msg", exc))
    return str(exc)
