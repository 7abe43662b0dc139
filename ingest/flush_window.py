"""The collector's flush window (pure, no I/O): accepted events grouped by their `raw` partition into envelopes.

Every request of a window adds its events here, so single-event requests from many clients share records:
one envelope per partition per window (more when a partition's events pass an envelope's limits, which seal it
early). Each event goes to `partition_for(device key)`, the partition a keyed produce would have picked, so the
processors see every device on the same partition as before envelopes.

A sealed envelope says whose events it holds (`owners`: owner → how many of its events), so the writer can answer
each request once every record holding one of its events is acknowledged.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.envelope import Envelope, EnvelopeLimits, pack, partition_for

Owner = TypeVar("Owner", bound=Hashable)


@dataclass(frozen=True)
class Sealed(Generic[Owner]):
    """One record to write: the envelope, the partition it is for, and how many events of each owner it holds."""

    partition: int
    envelope: Envelope
    owners: dict[Owner, int]


@dataclass
class _Open(Generic[Owner]):
    events: list[bytes] = field(default_factory=list)
    owners: list[Owner] = field(default_factory=list)
    size: int = 0  # bytes of the envelope's value so far (events and separators)


class FlushWindow(Generic[Owner]):
    """The envelopes being filled, one per partition. `add` returns envelopes that can take no more (full);
    `seal_all` ends the window and returns the rest. Envelopes fill greedily, in arrival order."""

    def __init__(self, partitions: int, limits: EnvelopeLimits):
        if partitions < 1:
            raise ValueError("a topic has at least one partition")
        self.partitions = partitions
        self.limits = limits
        self._open: dict[int, _Open[Owner]] = {}

    def __bool__(self) -> bool:
        return bool(self._open)

    @property
    def events(self) -> int:
        return sum(len(open_.events) for open_ in self._open.values())

    def add(self, key: bytes, event: bytes, owner: Owner) -> list[Sealed[Owner]]:
        """Put one event in its partition's envelope: first sealing that envelope if the event would not fit,
        then again if the event filled it to the event limit."""
        partition = partition_for(key, self.partitions)
        sealed: list[Sealed[Owner]] = []
        open_ = self._open.get(partition)
        if open_ is None:
            open_ = self._open[partition] = _Open()
        elif open_.size + 1 + len(event) > self.limits.max_bytes:
            sealed += self._seal(partition)
            open_ = self._open[partition] = _Open()
        open_.size += len(event) + (1 if open_.events else 0)
        open_.events.append(event)
        open_.owners.append(owner)
        if len(open_.events) >= self.limits.max_events:
            sealed += self._seal(partition)
        return sealed

    def seal_all(self) -> list[Sealed[Owner]]:
        """End the window: every envelope still open, ready to write (by partition, for a stable order)."""
        return [envelope for partition in sorted(self._open) for envelope in self._seal(partition)]

    def _seal(self, partition: int) -> list[Sealed[Owner]]:
        open_ = self._open.pop(partition)
        sealed, start = [], 0
        for envelope in pack(open_.events, self.limits):  # one envelope, unless one event alone is over max_bytes
            owners: dict[Owner, int] = {}
            for owner in open_.owners[start : start + envelope.count]:
                owners[owner] = owners.get(owner, 0) + 1
            sealed.append(Sealed(partition, envelope, owners))
            start += envelope.count
        return sealed
