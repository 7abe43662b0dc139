"""The condition language's in-memory evaluator: every operator, groups, validation, and laws that must hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.conditions import (
    ConditionGroup,
    NotEvaluableHere,
    PropertyCondition,
    compile_condition,
    condition_adapter,
    evaluate,
    kinds_used,
    properties_used,
)


def prop(name: str, operator: str, value=None) -> PropertyCondition:
    return PropertyCondition(property=name, operator=operator, value=value)


PERSON = {
    "plan": "Pro",
    "seats": 12,
    "score": "7.5",
    "beta": True,
    "signed_up": "2026-03-01T10:00:00Z",
    "email": "ann@example.com",
    "tags": ["a"],
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (prop("plan", "equals", "pro"), True),  # case-insensitive
        (prop("plan", "equals", "free"), False),
        (prop("plan", "not_equals", "free"), True),
        (prop("missing", "not_equals", "free"), False),  # missing: only is_not_set holds
        (prop("seats", "equals", 12), True),
        (prop("seats", "equals", "12"), True),  # a number compared as text
        (prop("score", "equals", 7.5), True),  # a numeric string compared as a number
        (prop("beta", "equals", True), True),
        (prop("beta", "equals", False), False),
        (prop("plan", "in", ["free", "PRO"]), True),
        (prop("plan", "not_in", ["free", "team"]), True),
        (prop("plan", "not_in", ["pro"]), False),
        (prop("email", "contains", "@EXAMPLE"), True),
        (prop("email", "not_contains", "gmail"), True),
        (prop("email", "starts_with", "ann"), True),
        (prop("email", "ends_with", ".org"), False),
        (prop("seats", "gt", 10), True),
        (prop("seats", "gte", 12), True),
        (prop("seats", "lt", 12), False),
        (prop("seats", "lte", 12), True),
        (prop("score", "gt", 7), True),
        (prop("plan", "gt", 1), False),  # text is no number
        (prop("beta", "gt", 0), False),  # a boolean is no number
        (prop("signed_up", "after", "2026-01-01"), True),
        (prop("signed_up", "before", "2026-01-01T00:00:00+00:00"), False),
        (prop("signed_up", "before", 1_900_000_000_000), True),
        (prop("plan", "is_set"), True),
        (prop("missing", "is_set"), False),
        (prop("missing", "is_not_set"), True),
        (prop("tags", "contains", "a"), False),  # lists are not text
        (prop("tags", "is_set"), True),
    ],
)
def test_each_operator(condition, expected):
    assert evaluate(condition, PERSON) is expected


def test_null_counts_as_missing():
    assert evaluate(prop("x", "is_not_set"), {"x": None})
    assert not evaluate(prop("x", "not_equals", "a"), {"x": None})


def test_groups_nest_and_parse_from_json():
    condition = condition_adapter.validate_python(
        {
            "kind": "group",
            "match": "any",
            "conditions": [
                {"kind": "property", "property": "plan", "operator": "equals", "value": "enterprise"},
                {"kind": "group", "match": "all", "conditions": [
                    {"kind": "property", "property": "seats", "operator": "gte", "value": 10},
                    {"kind": "property", "property": "beta", "operator": "equals", "value": True},
                ]},
            ],
        }
    )  # fmt: skip
    assert evaluate(condition, PERSON)
    assert not evaluate(condition, {**PERSON, "beta": False})
    assert properties_used(condition) == {"plan", "seats", "beta"}
    assert kinds_used(condition) == {"group", "property"}
    assert evaluate(ConditionGroup(match="all"), {}) and not evaluate(ConditionGroup(match="any"), {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "property", "property": "a", "operator": "gt", "value": "ten"}, "must be a finite number"),
        ({"kind": "property", "property": "a", "operator": "in", "value": "x"}, "non-empty list"),
        ({"kind": "property", "property": "a", "operator": "is_set", "value": 1}, "takes no value"),
        ({"kind": "property", "property": "a", "operator": "contains", "value": 3}, "compares text"),
        ({"kind": "property", "property": "a", "operator": "after", "value": "yesterday"}, "ISO 8601"),
        ({"kind": "property", "property": "a", "operator": "equals"}, "takes one value"),
        ({"kind": "property", "property": "a", "operator": "like", "value": "x"}, "operator"),
        ({"kind": "badge", "tag": "vip"}, "kind"),
        ({"kind": "event", "event": "Order Completed", "operator": "at_least", "count": 0}, "matches everyone"),
    ],
)
def test_invalid_conditions_name_the_rule(raw, message):
    with pytest.raises(ValidationError) as error:
        condition_adapter.validate_python(raw)
    assert message in str(error.value)


def test_nesting_is_bounded():
    condition: dict = {"kind": "property", "property": "a", "operator": "is_set"}
    for _ in range(8):
        condition = {"kind": "group", "conditions": [condition]}
    with pytest.raises(ValidationError, match="nest at most"):
        condition_adapter.validate_python(condition)


def test_kinds_outside_memory_are_refused():
    class Behaviour(BaseModel):  # the shape of an issue-17 kind decided in ClickHouse
        kind: str = "behaviour"
        event: str = "Order Completed"

    with pytest.raises(NotEvaluableHere, match="behaviour"):
        evaluate(ConditionGroup.model_construct(kind="group", match="all", conditions=[Behaviour()]), {})


# -- laws -----------------------------------------------------------------------------------------------

values = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=6), st.sampled_from(["12", "1.5", "true", "TRUE", "2026-01-01", "Pro", "pro"]),
)  # fmt: skip
scalars = st.one_of(st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, width=32), st.text(min_size=0, max_size=6))
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, width=32))
leaf = st.builds(
    lambda name, op, value: prop(name, op, value),
    st.sampled_from("abc"),
    st.sampled_from(["gt", "gte", "lt", "lte"]),
    numbers,
) | st.builds(lambda name, value: prop(name, "equals", value), st.sampled_from("abc"), scalars)
trees = st.recursive(
    leaf,
    lambda children: st.builds(ConditionGroup, match=st.sampled_from(["all", "any"]), conditions=st.lists(children, max_size=3)),
    max_leaves=8,
)
people = st.dictionaries(st.sampled_from("abc"), values, max_size=3)


@given(value=values, expected=scalars)
def test_not_equals_is_set_and_not_equal(value, expected):
    person = {"p": value}
    assert evaluate(prop("p", "not_equals", expected), person) == (
        value is not None and not evaluate(prop("p", "equals", expected), person)
    )


@given(value=values, members=st.lists(scalars, min_size=1, max_size=4))
def test_in_is_any_equals(value, members):
    person = {"p": value}
    assert evaluate(prop("p", "in", members), person) == any(evaluate(prop("p", "equals", m), person) for m in members)
    assert evaluate(prop("p", "not_in", members), person) == (value is not None and not evaluate(prop("p", "in", members), person))


@given(value=values, bound=numbers)
def test_number_operators_partition_comparable_values(value, bound):
    person = {"p": value}
    lt, gte = evaluate(prop("p", "lt", bound), person), evaluate(prop("p", "gte", bound), person)
    gt, lte = evaluate(prop("p", "gt", bound), person), evaluate(prop("p", "lte", bound), person)
    assert not (lt and gte) and not (gt and lte)
    comparable = evaluate(prop("p", "is_set"), person) and (lt or gte)
    assert (lt or gte) == (gt or lte) == comparable


@given(tree=trees, person=people)
def test_groups_are_and_or_of_their_children(tree, person):
    if isinstance(tree, ConditionGroup):
        results = [evaluate(c, person) for c in tree.conditions]
        assert evaluate(tree, person) == (all(results) if tree.match == "all" else any(results))
    # the JSON form evaluates the same as the model (what the API stores is what the collector runs)
    assert evaluate(tree, person) == evaluate(condition_adapter.validate_json(tree.model_dump_json()), person)


@given(value=values)
def test_is_set_and_is_not_set_are_complements(value):
    person = {"p": value}
    assert evaluate(prop("p", "is_set"), person) != evaluate(prop("p", "is_not_set"), person)


all_operators = st.sampled_from(
    ["equals", "not_equals", "gt", "gte", "lt", "lte", "contains", "not_contains", "starts_with", "ends_with", "before", "after"]
)


def _any_leaf(name, op, number_value, text_value, date_value, scalar_value):
    if op in ("gt", "gte", "lt", "lte"):
        return prop(name, op, number_value)
    if op in ("contains", "not_contains", "starts_with", "ends_with"):
        return prop(name, op, text_value)
    if op in ("before", "after"):
        return prop(name, op, date_value)
    return prop(name, op, scalar_value)


any_leaf = st.builds(
    _any_leaf, st.sampled_from("abc"), all_operators, numbers, st.text(max_size=3),
    st.sampled_from(["2026-01-01", "2026-01-01T10:00:00+02:00", 1_700_000_000_000]), scalars,
) | st.builds(lambda name, members: prop(name, "in", members), st.sampled_from("abc"), st.lists(scalars, min_size=1, max_size=3)) \
  | st.builds(lambda name, members: prop(name, "not_in", members), st.sampled_from("abc"), st.lists(scalars, min_size=1, max_size=3)) \
  | st.builds(lambda name, op: prop(name, op), st.sampled_from("abc"), st.sampled_from(["is_set", "is_not_set"]))  # fmt: skip
any_tree = st.recursive(
    any_leaf,
    lambda children: st.builds(ConditionGroup, match=st.sampled_from(["all", "any"]), conditions=st.lists(children, max_size=3)),
    max_leaves=8,
)
dated_people = st.dictionaries(
    st.sampled_from("abc"), values | st.sampled_from(["2025-12-31T23:00:00Z", "2026-02-01", 1_800_000_000_000]), max_size=3
)


@given(tree=any_tree, person=dated_people)
def test_compiled_matchers_decide_as_the_evaluator(tree, person):
    assert compile_condition(tree)(person) == evaluate(tree, person)
