"""Segments' pure parts: definitions, references between segments, per-type operators, and the membership
transitions (ids stable across re-decisions, the state folded from published changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.conditions import ConditionGroup, EventCondition, PropertyCondition, SegmentCondition, TagCondition, condition_adapter
from schemas.person_segments import known_segments
from schemas.segments import (
    Membership,
    MemberState,
    SegmentDefinition,
    apply_change,
    is_property_only,
    members_of,
    operator_problems,
    reference_problem,
    transitions,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def segment(segment_id: str, *conditions) -> SegmentDefinition:
    return SegmentDefinition(
        id=segment_id, name=segment_id, condition=ConditionGroup(conditions=list(conditions)), created_at=NOW, updated_at=NOW
    )


def test_references_must_exist_and_not_loop():
    a = segment("a", SegmentCondition(segment_id="b"))
    b = segment("b", TagCondition(tag="vip"))
    assert reference_problem("a", a.condition, {"b": b}) is None
    assert "no segment 'c'" in (reference_problem("a", ConditionGroup(conditions=[SegmentCondition(segment_id="c")]), {}) or "")
    looped = segment("b", SegmentCondition(segment_id="a"))
    assert "circular" in (reference_problem("a", a.condition, {"b": looped, "a": a}) or "")
    assert "circular" in (reference_problem("a", ConditionGroup(conditions=[SegmentCondition(segment_id="a")]), {}) or "")


def test_property_only_looks_through_referenced_segments():
    behaviour = segment("buyers", EventCondition(event="Order Completed"))
    assert is_property_only(segment("x", TagCondition(tag="vip")).condition, {})
    assert not is_property_only(segment("x", SegmentCondition(segment_id="buyers")).condition, {"buyers": behaviour})


def test_operators_fit_the_property_type():
    condition = ConditionGroup(
        conditions=[
            PropertyCondition(property="$last_seen", operator="contains", value="x"),
            PropertyCondition(property="plan", operator="gt", value=3),
            PropertyCondition(property="$visitor_number", operator="gt", value=3),
        ]
    )
    problems = operator_problems(condition, {"plan": "string"})
    assert [path for path, _ in problems] == ["condition.conditions.0.operator", "condition.conditions.1.operator"]
    assert "datetime property" in problems[0][1]


def test_a_definition_round_trips_through_json():
    raw = {"kind": "group", "match": "any", "conditions": [{"kind": "event", "event": "E", "operator": "at_most", "count": 0, "days": 7}]}
    assert condition_adapter.validate_json(condition_adapter.validate_python(raw).model_dump_json()) == condition_adapter.validate_python(
        raw
    )


def _decide(state, members, segment_id="s", at=NOW):
    inside = members_of(state).get(segment_id, set())
    changes = transitions(segment_id, members, state, inside, at)
    for change in changes:
        apply_change(state, change)
    return changes


@given(st.lists(st.sets(st.sampled_from(["p1", "p2", "p3"])), min_size=1, max_size=8))
def test_transitions_follow_membership_and_ids_never_repeat(rounds):
    state: dict = {}
    seen: set[str] = set()
    previous: set[str] = set()
    for index, members in enumerate(rounds):
        changes = _decide(state, members, at=NOW + timedelta(minutes=index))
        entered = {c.person_id for c in changes if c.kind == "segment_entered"}
        exited = {c.person_id for c in changes if c.kind == "segment_exited"}
        assert entered == members - previous and exited == previous - members
        ids = {c.change_id for c in changes}
        assert not ids & seen
        seen |= ids
        previous = members
        assert members_of(state).get("s", set()) == members


@given(st.lists(st.sets(st.sampled_from(["p1", "p2"])), min_size=1, max_size=6))
def test_a_state_rebuilt_from_the_published_changes_decides_nothing_new(rounds):
    """A restarted evaluator folds what it published (in any order, repeated) and re-decides nothing."""
    state: dict = {}
    published = []
    for index, members in enumerate(rounds):
        published += _decide(state, members, at=NOW + timedelta(minutes=index))
    rebuilt: dict = {}
    for change in [*reversed(published), *published]:
        apply_change(rebuilt, change)
    assert members_of(rebuilt) == members_of(state)
    assert _decide(rebuilt, rounds[-1]) == []


@given(
    st.lists(st.tuples(st.sampled_from(["s1", "s2"]), st.lists(st.sets(st.sampled_from(["p1", "p2", "p3"])), max_size=4))),
    st.randoms(use_true_random=False),
)
def test_the_membership_indexes_agree_with_a_scan_of_the_standings(segments_rounds, shuffle):
    """Folded in any order and repeated, as the evaluator reads back what it published: the indexes Membership
    keeps say what scanning every standing says."""
    state: dict = {}
    published = []
    for segment_id, rounds in segments_rounds:
        for index, members in enumerate(rounds):
            published += _decide(state, members, segment_id, at=NOW + timedelta(minutes=index))
    replayed = [*published, *published[: len(published) // 2]]
    shuffle.shuffle(replayed)
    membership = Membership()
    for change in replayed:
        membership.apply(change)
    assert membership.inside == members_of(membership.standings)
    assert membership.segments == known_segments(membership.standings)
    assert all(membership.members(s) == members_of(state).get(s, set()) for s in ("s1", "s2"))


def test_a_re_decided_transition_has_the_same_id():
    """Crash before publishing: the next run decides the same entry with the same id (a later time, though)."""
    first = transitions("s", {"p1"}, {}, set(), NOW)
    again = transitions("s", {"p1"}, {}, set(), NOW + timedelta(minutes=1))
    assert first[0].change_id == again[0].change_id
    state = {("s", "p1"): MemberState(1, False, None)}
    assert transitions("s", {"p1"}, state, set(), NOW)[0].detail == {"entry": 2}


@pytest.mark.parametrize("bad", [{"id": "has space"}, {"name": ""}])
def test_definitions_are_checked(bad):
    with pytest.raises(ValueError):
        SegmentDefinition.model_validate(
            {"id": "ok", "name": "n", "condition": {"kind": "group"}, "created_at": NOW, "updated_at": NOW, **bad}
        )
