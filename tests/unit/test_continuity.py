"""Offset continuity: a jump forward within a generation, or a generation starting past its resume offset, is
a skip; redeliveries are not."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.continuity import OffsetContinuity, Skip, StallWatch, resume_offset


def test_contiguous_records_are_not_a_skip():
    guard = OffsetContinuity()
    assert guard.starts_generation("raw-0", 1)
    assert guard.observe("raw-0", 1, 10, resume_at=10) is None
    assert not guard.starts_generation("raw-0", 1)
    assert [guard.observe("raw-0", 1, offset) for offset in (11, 12, 13)] == [None, None, None]


def test_a_jump_within_a_generation_names_the_skipped_offsets():
    guard = OffsetContinuity()
    guard.observe("raw-0", 1, 0, resume_at=0)
    guard.observe("raw-0", 1, 1)
    assert guard.observe("raw-0", 1, 5) == Skip("raw-0", 1, 2, 4)


def test_a_generation_starting_past_the_commit_is_a_skip():
    """The seed-3 shape: the new owner started at the log end although nothing past offset 112 was committed."""
    guard = OffsetContinuity()
    guard.observe("raw-0", 1, 111, resume_at=0)
    assert guard.starts_generation("raw-0", 2)
    assert guard.observe("raw-0", 2, 690, resume_at=112) == Skip("raw-0", 2, 112, 689)


def test_a_generation_may_start_after_records_this_worker_handled_before_their_commit():
    """A partition that stays with a worker across a rebalance: faust does not hand over again the records the
    worker read in the earlier generation, committed or not. Those were handled here, so nothing was skipped."""
    guard = OffsetContinuity()
    for offset in range(5):
        guard.observe("identity-commands-0", 1, offset, resume_at=0)
    assert guard.starts_generation("identity-commands-0", 2)
    assert guard.observe("identity-commands-0", 2, 5, resume_at=0) is None
    assert guard.observe("identity-commands-0", 2, 6) is None


def test_a_generation_starting_past_what_this_worker_handled_is_still_a_skip():
    guard = OffsetContinuity()
    for offset in range(5):
        guard.observe("raw-0", 1, offset, resume_at=0)
    assert guard.observe("raw-0", 2, 8, resume_at=0) == Skip("raw-0", 2, 5, 7)
    other = OffsetContinuity()
    other.observe("raw-0", 1, 3, resume_at=3)
    assert other.observe("raw-0", 2, 30, resume_at=20) == Skip("raw-0", 2, 20, 29)  # the commit moved on since


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=12))
def test_a_worker_never_reports_a_skip_over_offsets_it_or_a_commit_covered(generations):
    """Any series of generations, each starting anywhere up to the first offset neither this worker handled nor
    the group committed (the commit may lag behind this worker, or run ahead of it with others' work), is never a
    skip; a start one past that always is."""
    guard, handled_to, committed = OffsetContinuity(), 0, 0  # this worker handled every offset below handled_to
    for generation, (commit_moves, back, run) in enumerate(generations, start=1):
        committed += commit_moves
        start = max(0, max(committed, handled_to) - back)
        for offset in range(start, start + run + 1):
            assert guard.observe("p", generation, offset, resume_at=committed if offset == start else None) is None
        handled_to = max(handled_to, start + run + 1)
    first_unhandled, last = max(committed, handled_to), len(generations) + 1
    assert guard.observe("p", last, first_unhandled + 1, resume_at=committed) == Skip("p", last, first_unhandled, first_unhandled)


def test_starting_before_the_commit_is_a_redelivery_not_a_skip():
    guard = OffsetContinuity()
    assert guard.observe("raw-0", 3, 40, resume_at=50) is None
    assert guard.observe("raw-0", 3, 41) is None


def test_a_redelivery_after_a_seek_back_is_not_a_skip():
    guard = OffsetContinuity()
    for offset in (0, 1, 2, 3):
        guard.observe("raw-0", 1, offset, resume_at=0)
    assert guard.observe("raw-0", 1, 1) is None
    assert guard.observe("raw-0", 1, 2) is None
    assert guard.observe("raw-0", 1, 4) == Skip("raw-0", 1, 3, 3)


def test_partitions_are_tracked_apart():
    guard = OffsetContinuity()
    guard.observe("raw-0", 1, 0, resume_at=0)
    assert guard.starts_generation("raw-1", 1)
    assert guard.observe("raw-1", 1, 7, resume_at=7) is None
    assert guard.observe("raw-0", 1, 1) is None


def test_the_first_record_of_a_generation_needs_its_resume_offset():
    with pytest.raises(ValueError, match="needs the offset it resumes at"):
        OffsetContinuity().observe("raw-0", 1, 0)


@pytest.mark.parametrize(("committed", "log_start", "expected"), [(None, 0, 0), (-1, 5, 5), (12, 0, 12), (3, 9, 9)])
def test_resume_offset_is_the_commit_or_the_log_start(committed, log_start, expected):
    assert resume_offset(committed, log_start) == expected


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=40))
def test_any_replay_without_a_jump_forward_is_never_a_skip(moves):
    """Handing over contiguous runs, each starting anywhere at or before the one after the last handed over."""
    guard = OffsetContinuity()
    last = 0
    assert guard.observe("p", 1, 0, resume_at=0) is None
    for back, run in moves:
        for offset in range(max(0, last + 1 - back), max(0, last + 1 - back) + run + 1):
            assert guard.observe("p", 1, offset) is None
            last = offset


@given(st.integers(0, 1000), st.integers(2, 500))
def test_every_jump_forward_is_reported_exactly(last, jump):
    guard = OffsetContinuity()
    guard.observe("p", 4, last, resume_at=last)
    assert guard.observe("p", 4, last + jump) == Skip("p", 4, last + 1, last + jump - 1)


# --- stalls ------------------------------------------------------------------------------------------------------


def test_waiting_records_not_moved_on_between_two_checks_are_a_stall():
    watch = StallWatch()
    assert watch.check(5, {"raw-0": 10, "raw-1": 4}, {"raw-0": 20, "raw-1": 4}) == []
    assert watch.check(5, {"raw-0": 10, "raw-1": 4}, {"raw-0": 25, "raw-1": 9}) == ["raw-0"]


def test_a_partition_that_moves_on_or_has_nothing_waiting_is_not_stalled():
    watch = StallWatch()
    watch.check(1, {"raw-0": 10, "raw-1": 7}, {"raw-0": 20, "raw-1": 7})
    assert watch.check(1, {"raw-0": 11, "raw-1": 7}, {"raw-0": 20, "raw-1": 7}) == []
    assert watch.check(1, {"raw-0": 11, "raw-1": 7}, {"raw-0": 20, "raw-1": 7}) == ["raw-0"]


def test_a_new_generation_starts_the_watch_again():
    watch = StallWatch()
    watch.check(1, {"raw-0": 10}, {"raw-0": 20})
    assert watch.check(2, {"raw-0": 10}, {"raw-0": 20}) == []
    assert watch.check(2, {"raw-0": 10}, {"raw-0": 20}) == ["raw-0"]


def test_the_position_is_known_only_within_the_generation_of_the_last_record():
    guard = OffsetContinuity()
    assert guard.position("raw-0", 1) is None
    guard.observe("raw-0", 1, 41, resume_at=41)
    assert (guard.position("raw-0", 1), guard.position("raw-0", 2)) == (42, None)
