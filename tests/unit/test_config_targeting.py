"""Config targeting on a person's facts (tags, lists, stage, status, identity, segment membership): the in-memory
evaluator against the segments' reference evaluator, the compiled matchers against the evaluator, what config
rules accept, and the person-segments records the segment evaluator publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.conditions import (
    ConditionGroup,
    IdentityCondition,
    ListCondition,
    SegmentCondition,
    StageCondition,
    StatusCondition,
    TagCondition,
    compile_condition,
    condition_adapter,
    evaluate,
)
from schemas.configs import ConfigSpec, ConfigVersion, Subject, serve
from schemas.person_properties import targeting_properties
from schemas.person_segments import PersonSegments, reconcile, records_for, segments_of
from schemas.segments import PersonFacts, SegmentDefinition, apply_change, evaluate_segment, members_of, transitions
from tests.unit.test_conditions import any_leaf

NOW = datetime(2026, 11, 30, tzinfo=UTC)
TAGS, LISTS, STAGES, SEGMENT_IDS = ["vip", "beta", "VIP"], ["l1", "l2"], ["", "lead", "customer"], ["s1", "s2"]

fact_leaf = st.one_of(
    st.builds(TagCondition, operator=st.sampled_from(["has", "has_not"]), tag=st.sampled_from(TAGS)),
    st.builds(ListCondition, operator=st.sampled_from(["in", "not_in"]), list_id=st.sampled_from(LISTS)),
    st.builds(StageCondition, operator=st.sampled_from(["in", "not_in"]), stages=st.lists(st.sampled_from(STAGES), min_size=1, max_size=2)),
    st.builds(StatusCondition, status=st.sampled_from(["active", "disabled"])),
    st.builds(IdentityCondition, identity=st.sampled_from(["identified", "anonymous", "contact", "not_contact"])),
)


def _groups(leaves):
    return st.recursive(
        leaves,
        lambda children: st.builds(ConditionGroup, match=st.sampled_from(["all", "any"]), conditions=st.lists(children, max_size=3)),
        max_leaves=8,
    )


fact_trees = _groups(fact_leaf)
segment_leaf = st.builds(SegmentCondition, operator=st.sampled_from(["in", "not_in"]), segment_id=st.sampled_from(SEGMENT_IDS))
targeting_trees = _groups(fact_leaf | segment_leaf | any_leaf)


@st.composite
def persons(draw) -> dict:
    """A persons row's columns as the projector writes them (every column present)."""
    identified = draw(st.booleans())
    return {
        "tags": draw(st.lists(st.sampled_from(TAGS), unique=True)),
        "lists": draw(st.lists(st.sampled_from(LISTS), unique=True)),
        "stage": draw(st.sampled_from(STAGES)),
        "status": draw(st.sampled_from(["active", "disabled"])),
        "is_identified": identified,
        "is_contact": identified or draw(st.booleans()),
    }


# Garbage a client may send as properties: the evaluator never fails on it, and a compiled matcher agrees.
odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=4), st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3)
)
odd_facts = st.dictionaries(
    st.sampled_from(["$tags", "$lists", "$stage", "$status", "$is_identified", "$is_contact", "$segments", "a", "b"]), odd_values
)


@settings(max_examples=400)
@given(tree=fact_trees, columns=persons())
@example(tree=TagCondition(tag="VIP"), columns={"tags": ["vip", "VIP"], "lists": [], "stage": "", "status": "active",
                                                "is_identified": False, "is_contact": False})  # fmt: skip
def test_facts_decide_as_the_segments_do(tree, columns):
    """What a config rule decides from the published facts is what a segment decides from the persons row."""
    facts = targeting_properties({}, columns)
    person = PersonFacts("p", columns, {})
    assert evaluate(tree, facts) == evaluate_segment(tree, person, {}, 0)


@given(tree=targeting_trees, facts=odd_facts)
def test_compiled_matchers_decide_as_the_evaluator_on_any_input(tree, facts):
    assert compile_condition(tree)(facts) == evaluate(tree, facts)


@given(inner=fact_trees, columns=persons(), operator=st.sampled_from(["in", "not_in"]))
def test_segment_membership_decides_as_the_segment_itself(inner, columns, operator):
    """Targeting a segment by its published membership is targeting its condition (the segments inlined)."""
    definition = SegmentDefinition(id="s1", name="S", condition=ConditionGroup(conditions=[inner]), created_at=NOW, updated_at=NOW)
    person = PersonFacts("p", columns, {})
    member = evaluate_segment(definition.condition, person, {}, 0)
    facts = targeting_properties({}, columns, ["s1"] if member else [])
    condition = SegmentCondition(operator=operator, segment_id="s1")
    assert evaluate(condition, facts) == evaluate_segment(condition, person, {"s1": definition}, 0)


def test_an_unknown_person_is_active_anonymous_in_no_list_segment_or_stage():
    unknown: dict = {}
    assert evaluate(StatusCondition(status="active"), unknown) and not evaluate(StatusCondition(status="disabled"), unknown)
    assert evaluate(IdentityCondition(identity="anonymous"), unknown)
    assert evaluate(StageCondition(stages=[""]), unknown) and not evaluate(StageCondition(stages=["lead"]), unknown)
    assert evaluate(TagCondition(operator="has_not", tag="vip"), unknown)
    assert not evaluate(SegmentCondition(segment_id="s1"), unknown) and not evaluate(ListCondition(list_id="l1"), unknown)
    assert not evaluate(TagCondition(tag="vip"), {"$tags": "vip"})  # a text is not a set of tags


def _rule(condition: dict, variant: str = "true") -> dict:
    return {"condition": condition, "variant": variant}


def test_config_rules_take_the_fact_kinds_and_serve_on_them():
    spec = ConfigSpec.model_validate(
        {
            "key": "beta",
            "rules": [
                _rule({"kind": "status", "status": "disabled"}, "false"),
                _rule(
                    {
                        "kind": "group",
                        "match": "any",
                        "conditions": [{"kind": "segment", "segment_id": "buyers"}, {"kind": "tag", "tag": "vip"}],
                    }
                ),
                _rule({"kind": "group", "conditions": [{"kind": "list", "list_id": "l1"}, {"kind": "stage", "stages": ["lead"]}]}),
                _rule({"kind": "identity", "identity": "contact"}),
            ],
        }
    )
    config = ConfigVersion(spec=spec, version=1, change="created", changed_at=NOW)

    def rule_for(**facts) -> int | None:
        served = serve(config, Subject("dev", None, "p", {f"${k}": v for k, v in facts.items()}), NOW)
        return served.rule if served.reason == "rule_match" else None

    assert rule_for(status="disabled", tags=["vip"]) == 0
    assert rule_for(segments=["buyers"]) == 1 and rule_for(tags=["vip"]) == 1
    assert rule_for(lists=["l1"], stage="lead") == 2 and rule_for(lists=["l1"], stage="customer") is None
    assert rule_for(is_contact=True) == 3 and rule_for() is None
    assert spec.references() == [("rules.1.condition.conditions.0.segment_id", "segment", "buyers"),
                                 ("rules.2.condition.conditions.0.list_id", "list", "l1")]  # fmt: skip


@pytest.mark.parametrize(
    "condition",
    [
        {"kind": "event", "event": "Order Completed"},
        {"kind": "group", "conditions": [{"kind": "tag", "tag": "x"}, {"kind": "last_seen", "days": 3}]},
        {"kind": "session_count", "operator": "gt", "value": 2},
    ],
)
def test_config_rules_refuse_kinds_that_need_clickhouse_naming_the_rule(condition):
    with pytest.raises(ValidationError) as refused:
        ConfigSpec.model_validate({"key": "k", "rules": [{"rollout_percent": 10}, _rule(condition)]})
    error = refused.value.errors()[0]
    assert error["loc"] == ("rules", 1, "condition") and "put it in a segment" in error["msg"]


def test_fact_conditions_round_trip_through_json():
    raw = {
        "kind": "group",
        "conditions": [{"kind": "segment", "operator": "not_in", "segment_id": "s"}, {"kind": "identity", "identity": "anonymous"}],
    }
    parsed = condition_adapter.validate_python(raw)
    assert condition_adapter.validate_json(parsed.model_dump_json()) == parsed


# -- person-segments -------------------------------------------------------------------------------------------

rounds = st.lists(
    st.tuples(st.sampled_from(SEGMENT_IDS), st.sets(st.sampled_from(["p1", "p2", "p3"]))),
    min_size=1,
    max_size=10,
)


def _run(state: dict, evaluations) -> list:
    """The evaluator's rounds: each evaluation's transitions, applied to the state as it publishes them."""
    published = []
    for index, (segment_id, members) in enumerate(evaluations):
        inside = members_of(state).get(segment_id, set())
        changes = transitions(segment_id, members, state, inside, NOW + timedelta(minutes=index))
        for change in changes:
            apply_change(state, change)
        published.append(changes)
    return published


@given(rounds)
def test_person_records_say_the_segments_and_versions_only_grow(evaluations):
    state: dict = {}
    last: dict[str, int] = {}
    for evaluation in evaluations:
        for changes in _run(state, [evaluation]):
            for person_id, value in records_for({c.person_id for c in changes}, state):
                if value is None:
                    assert not any(p == person_id and s.inside for (_, p), s in state.items())
                    continue
                record = PersonSegments.model_validate_json(value)
                assert record.version > last.get(person_id, 0)
                last[person_id] = record.version
                assert set(record.segments) == {s for s, found in members_of(state).items() if person_id in found}


@given(rounds, st.data())
def test_reconcile_publishes_exactly_what_the_topic_lacks(evaluations, data):
    state: dict = {}
    published_changes = [c for changes in _run(state, evaluations) for c in changes]
    everything = dict(reconcile(state, {}))
    in_some_segment = {p for members in members_of(state).values() for p in members}
    assert {k for k, v in everything.items() if v is not None} == in_some_segment
    topic = {k: PersonSegments.model_validate_json(v) for k, v in everything.items() if v is not None}
    assert reconcile(state, topic) == []  # in step: nothing to publish
    # a restarted evaluator rebuilds its state from the changes (repeated, any order) and agrees with the topic
    rebuilt: dict = {}
    for change in data.draw(st.permutations([*published_changes, *published_changes])):
        apply_change(rebuilt, change)
    assert reconcile(rebuilt, topic) == []
    # a record lost in a crash (or a person the topic wrongly holds) is what gets published
    if topic:
        lost = sorted(topic)[0]
        assert reconcile(state, {k: v for k, v in topic.items() if k != lost}) == [(lost, everything[lost])]
    stray = PersonSegments(person_id="ghost", version=1, segments=["s1"])
    assert reconcile(state, {**topic, "ghost": stray}) == [("ghost", None)]


def test_a_deleted_segment_counts_in_the_version_and_leaves_the_record():
    state: dict = {}
    _run(state, [("s1", {"p1"}), ("s2", {"p1"}), ("s1", set())])
    assert segments_of("p1", state, {"s1", "s2"}) == PersonSegments(person_id="p1", version=3, segments=["s2"])
    _run(state, [("s2", set())])
    assert segments_of("p1", state, {"s1", "s2"}) is None and records_for(["p1"], state) == [("p1", None)]


def test_api_errors_name_the_condition_field_and_keep_messages_whole():
    """A rule's message that starts with a phrase (not a field) is kept whole; one that names a path extends the field."""
    from fastapi.exceptions import RequestValidationError

    from api.errors import validation_errors

    def fields(rule: dict) -> list[tuple[str, str]]:
        with pytest.raises(ValidationError) as refused:
            ConfigSpec.model_validate({"key": "k", "rules": [rule]})
        return [(e.field, e.message) for e in validation_errors(RequestValidationError(refused.value.errors(include_url=False)))]

    assert fields({"condition": {"kind": "property", "property": "n", "operator": "gt", "value": "ten"}}) == [
        ("rules.0.condition.property", "'gt' compares numbers: the value must be a finite number")
    ]
    [(field, message)] = fields({"condition": group_of({"kind": "tag", "tag": "t"}, {"kind": "event", "event": "E"})})
    assert field == "rules.0.condition.conditions.1" and message.startswith("a 'event' condition is decided in ClickHouse")


def group_of(*conditions: dict) -> dict:
    return {"kind": "group", "conditions": list(conditions)}
