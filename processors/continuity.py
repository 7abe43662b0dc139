"""Offset continuity: does a partition's next record follow the last one a worker handled?

faust's offset bookkeeping can skip records around a rebalance (RELIABILITY.md): a fetch that resumes past
records nobody handled, or a gap faust marks as done and commits over. The input topics the processors
guard are never compacted and never transactional, so their offsets are contiguous: a record whose offset
is beyond the one expected means records were skipped. The worker must stop before acknowledging it, so that
its successor resumes from the last commit and nothing acknowledged is lost.

Pure bookkeeping, no I/O: the agent supplies where a consumer group generation had to resume.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Skip:
    """Records `first`..`last` (inclusive) of `partition` were never handed to the worker."""

    partition: Hashable
    generation: int | None
    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.partition}: offsets {self.first}..{self.last} skipped (generation {self.generation})"


def resume_offset(committed: int | None, log_start: int) -> int:
    """Where a new owner must start: the group's committed offset, or the log start when there is none (or
    when retention already deleted the committed position)."""
    if committed is None or committed < 0:
        return log_start
    return max(committed, log_start)


class OffsetContinuity:
    """Remembers, per partition, the consumer group generation and the last offset handed over.

    A record may come again (a redelivery after a seek back): that is a duplicate, which downstream collapses,
    never a loss. Only a jump forward is a skip."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[int | None, int]] = {}
        self._highest: dict[Hashable, int] = {}  # the highest offset this worker ever handed over, any generation

    def position(self, partition: Hashable, generation: int | None) -> int | None:
        """The next offset expected in `partition` in this generation; None before its first record."""
        seen = self._last.get(partition)
        return seen[1] + 1 if seen is not None and seen[0] == generation else None

    def starts_generation(self, partition: Hashable, generation: int | None) -> bool:
        """True for the first record of `partition` in a generation: checking it needs the resume offset."""
        seen = self._last.get(partition)
        return seen is None or seen[0] != generation

    def observe(self, partition: Hashable, generation: int | None, offset: int, resume_at: int | None = None) -> Skip | None:
        """Record that `offset` is being handed over; the skip before it, if any.

        `resume_at` is required when `starts_generation` is true: the first record may lie beyond it only by
        records this worker handed over itself in an earlier generation. faust does not hand those over again when
        a partition stays with a worker across a rebalance before their commit: they are handled, not skipped, and
        calling them a skip made two workers stop each other in turn (RELIABILITY.md)."""
        seen = self._last.get(partition)
        highest = self._highest.get(partition)
        if seen is not None and seen[0] == generation:
            expected = seen[1] + 1
        elif resume_at is None:
            raise ValueError(f"{partition}: the first record of generation {generation} needs the offset it resumes at")
        else:
            expected = resume_at if highest is None else max(resume_at, highest + 1)
        self._last[partition] = (generation, offset)
        self._highest[partition] = offset if highest is None else max(highest, offset)
        if offset > expected:
            return Skip(partition, generation, expected, offset - 1)
        return None


class StallWatch:
    """Notices a partition whose records wait while the worker handles none of them.

    A faust worker can end a rebalance owning partitions it never fetches again (seen in footfall's kill -9
    tests: ready, then idle for minutes while records waited). Nothing is lost, the records stay in Kafka,
    but nobody handles them until the worker restarts. A partition is stalled when records were waiting at
    two checks in a row, within one generation, and the handled position did not move in between."""

    def __init__(self) -> None:
        self._previous: dict[Hashable, tuple[int | None, int]] = {}  # partition -> (generation, position)

    def check(self, generation: int | None, positions: dict[Hashable, int], ends: dict[Hashable, int]) -> list[Hashable]:
        """`positions`: the next offset the worker would handle, per owned partition; `ends`: the log end offsets."""
        stalled = []
        current: dict[Hashable, tuple[int | None, int]] = {}
        for partition, position in positions.items():
            if ends.get(partition, position) <= position:
                continue  # nothing waiting
            current[partition] = (generation, position)
            if self._previous.get(partition) == (generation, position):
                stalled.append(partition)
        self._previous = current
        return stalled
