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

    def starts_generation(self, partition: Hashable, generation: int | None) -> bool:
        """True for the first record of `partition` in a generation: checking it needs the resume offset."""
        seen = self._last.get(partition)
        return seen is None or seen[0] != generation

    def observe(self, partition: Hashable, generation: int | None, offset: int, resume_at: int | None = None) -> Skip | None:
        """Record that `offset` is being handed over; the skip before it, if any.

        `resume_at` is required when `starts_generation` is true: the first record may not lie beyond it."""
        seen = self._last.get(partition)
        if seen is not None and seen[0] == generation:
            expected = seen[1] + 1
        elif resume_at is None:
            raise ValueError(f"{partition}: the first record of generation {generation} needs the offset it resumes at")
        else:
            expected = resume_at
        self._last[partition] = (generation, offset)
        if offset > expected:
            return Skip(partition, generation, expected, offset - 1)
        return None
