"""Tracking meets property definitions (projections/property_rules.py): the event stays, a violating value
does not reach the profile, and each refused value becomes a bad row naming the property, type and rule."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.profiles import EMPTY, fold, properties_of
from projections.property_rules import screen, violation_bad_row
from schemas.bad_rows import BadRow
from schemas.events import EnrichedEvent
from schemas.properties import BUILT_IN, PropertyDefinition

RULES = {
    **BUILT_IN,
    "plan": PropertyDefinition(name="plan", type="enum", options=["free", "pro"]),
    "age": PropertyDefinition(name="age", type="integer", minimum=0, maximum=150),
    "segment": PropertyDefinition(name="segment", type="string", required=True),
}
HASHED = "sha256:" + "a" * 64


def event(type_: str = "track", traits=None, **properties) -> EnrichedEvent:
    return EnrichedEvent(
        message_id="m1",
        type=type_,
        user_id="u1",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        source_id="web",
        traits=traits or {},
        properties={f"${k}": v for k, v in properties.items()},
        person_id="p1",
    )


def test_events_without_property_writes_pass_untouched():
    plain = event()
    assert screen(plain, RULES) == (plain, [])


def test_violating_values_are_taken_out_and_the_rest_kept():
    original = event(
        "identify",
        traits={"email": "nope", "first_name": "Ann", "age": 200},
        set={"plan": "gold", "age": 30, "colour": "red"},
        set_once={"plan": "pro"},
        unset=["segment", "colour"],
    )
    screened, violations = screen(original, RULES)
    assert screened.traits == {"first_name": "Ann"}
    assert screened.properties == {"$set": {"age": 30, "colour": "red"}, "$set_once": {"plan": "pro"}, "$unset": ["colour"]}
    found = {(v.where, v.error.property, v.error.rule, v.error.value_type) for v in violations}
    assert found == {
        ("traits", "email", "type", "string"),
        ("traits", "age", "maximum", "integer"),
        ("properties.$set", "plan", "options", "string"),
        ("properties.$unset", "segment", "required", "null"),
    }
    assert properties_of(fold(EMPTY, screened)) == {"first_name": "Ann", "age": 30, "plan": "pro"}
    assert original.traits["email"] == "nope"  # the event itself is not changed


def test_an_email_hashed_at_the_collector_passes():
    screened, violations = screen(event("identify", traits={"email": HASHED}), RULES)
    assert violations == [] and screened.traits == {"email": HASHED}


def test_the_bad_row_names_the_property_where_rule_and_value_type():
    original = event(set={"age": "forty"})
    [violation] = screen(original, RULES)[1]
    row = BadRow.model_validate_json(violation_bad_row(original, violation))
    assert (row.kind, row.stage, row.source_id, row.message_id) == ("property_violation", "projector", "web", "m1")
    assert (row.field, row.rule) == ("properties.$set.age", "type")
    assert row.reason.startswith("(string) age ")
    assert orjson.loads(row.payload) == {
        "message_id": "m1",
        "distinct_id": "u1",
        "person_id": "p1",
        "property": "age",
        "rule": "type",
        "value_type": "string",
        "value": '"forty"',
    }


values = st.none() | st.booleans() | st.integers(-5, 200) | st.sampled_from(["free", "pro", "gold", "a@example.com", "x"])


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["plan", "age", "email", "city", "other"]), values, max_size=5))
def test_every_write_either_reaches_the_profile_or_is_a_violation(written):
    screened, violations = screen(event(set=written), RULES)
    refused = {v.error.property for v in violations}
    assert set(screened.properties["$set"]) | refused == set(written)
    assert not set(screened.properties["$set"]) & refused
    assert screen(screened, RULES)[1] == []  # what passed passes again


def test_segments_object_traits_pass_as_the_spec_sends_them_but_a_plain_value_is_still_checked():
    """Segment's identify spec makes `company` and `address` objects: never a violation of the built-in
    `company` string, which still checks a plain value, and still checks the object anywhere but traits."""
    company = {"name": "Acme", "id": "c-1", "employee_count": 40}
    spec_call = event("identify", traits={"company": company, "address": {"city": "Oslo"}})
    assert screen(spec_call, RULES) == (spec_call, [])
    too_long = event("identify", traits={"company": "x" * 300})
    assert [(v.error.property, v.error.rule) for v in screen(too_long, RULES)[1]] == [("company", "max_length")]
    set_object = event(set={"company": company})
    assert [(v.where, v.error.property) for v in screen(set_object, RULES)[1]] == [("properties.$set", "company")]
