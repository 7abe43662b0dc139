"""The admin Configs form ↔ the API's definition: what the form shows of a config reads back as the same
config (property-tested over valid definitions), blank rows are dropped, and the API's errors land at the
form field of the right row."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from api.console.configs_view import condition_text, config_body, form_field_of, form_values, rules_text
from schemas.configs import ConfigSpec

KEYS = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)
CONDITIONS = st.none() | st.builds(
    lambda prop, value: {
        "kind": "group",
        "match": "all",
        "conditions": [{"kind": "property", "property": prop, "operator": "equals", "value": value}],
    },
    KEYS,
    st.text(string.ascii_letters, min_size=1, max_size=5),
)


@st.composite
def specs(draw) -> ConfigSpec:
    config_type = draw(st.sampled_from(["boolean", "string", "json"]))
    data: dict = {
        "key": draw(KEYS),
        "type": config_type,
        "enabled": draw(st.booleans()),
        "description": draw(st.text(string.ascii_letters, max_size=10)),
    }
    if config_type == "boolean":
        keys = ["true", "false"]
    else:
        keys = draw(st.lists(KEYS, min_size=1, max_size=4, unique=True))
        values = JSON_VALUES if config_type == "json" else st.none() | st.text(string.ascii_letters, min_size=1, max_size=6)
        data["variants"] = [{"key": k, "weight": draw(st.integers(1, 100)), "value": draw(values)} for k in keys]
        data["default"] = draw(st.sampled_from(keys))
    data["rules"] = [
        {
            "condition": draw(CONDITIONS),
            "rollout_percent": draw(st.sampled_from([0, 12.5, 50, 100])),
            "variant": draw(st.none() | st.sampled_from(keys)),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    return ConfigSpec.model_validate(data)


@given(specs())
def test_what_the_form_shows_reads_back_as_the_same_config(spec: ConfigSpec):
    shown = spec.model_dump(mode="json")
    body, errors, _, _ = config_body(form_values(shown))
    assert errors == {}
    assert ConfigSpec.model_validate(body) == spec.model_copy(update={"overrides": []})


def test_blank_rows_are_dropped_and_unreadable_fields_named():
    form = {
        "key": "k",
        "type": "json",
        "enabled": "on",
        "default": "a",
        "variant_key_0": "a",
        "variant_weight_0": "1",
        "variant_value_0": '{"x": 1}',
        "variant_key_1": "",
        "variant_weight_1": "",
        "variant_value_1": "",
        "variant_key_2": "b",
        "variant_weight_2": "two",
        "variant_value_2": "{nope",
        "rule_condition_0": "",
        "rule_rollout_0": "",
        "rule_variant_0": "",
        "rule_condition_1": "",
        "rule_rollout_1": "50",
        "rule_variant_1": "b",
    }
    body, errors, variant_rows, rule_rows = config_body(form)
    assert [v["key"] for v in body["variants"]] == ["a", "b"] and variant_rows == [0, 2]
    assert body["variants"][0]["value"] == {"x": 1}
    assert body["rules"] == [{"rollout_percent": 50.0, "variant": "b"}] and rule_rows == [1]
    assert set(errors) == {"variant_weight_2", "variant_value_2"}


def test_api_errors_land_at_the_field_of_their_row():
    variant_rows, rule_rows = [0, 2], [1, 3]
    assert form_field_of("variants.1.key", variant_rows, rule_rows) == "variant_key_2"
    assert form_field_of("rules.1.rollout_percent", variant_rows, rule_rows) == "rule_rollout_3"
    assert form_field_of("rules[0].variant", variant_rows, rule_rows) == "rule_variant_1"
    assert form_field_of("rules[0]", variant_rows, rule_rows) == "rule_variant_1"
    assert form_field_of("rules.0.condition.group.conditions.0.property.value", variant_rows, rule_rows) == "rule_condition_1"
    assert form_field_of("default", variant_rows, rule_rows) == "default"
    assert form_field_of("variants.7.key", variant_rows, rule_rows) == "variants"


def test_rules_read_as_words():
    config = {
        "rules": [
            {
                "condition": {
                    "kind": "group",
                    "match": "any",
                    "conditions": [
                        {"kind": "property", "property": "plan", "operator": "equals", "value": "pro"},
                        {"kind": "property", "property": "seats", "operator": "greater_than", "value": 10},
                    ],
                },
                "rollout_percent": 50,
                "variant": "pro",
            },
            {"rollout_percent": 12.5},
        ]
    }
    assert rules_text(config) == ['(plan equals "pro" or seats greater than 10) → 50% get pro', "everyone → 12.5% split by weight"]
    assert condition_text({"kind": "property", "property": "email", "operator": "is_set"}) == "email is set"
    facts = {"kind": "group", "match": "any", "conditions": [
        {"kind": "segment", "segment_id": "buyers"}, {"kind": "list", "operator": "not_in", "list_id": "beta"},
        {"kind": "tag", "operator": "has_not", "tag": "vip"}, {"kind": "stage", "stages": ["lead", ""]},
        {"kind": "status", "status": "disabled"}, {"kind": "identity", "identity": "not_contact"}]}  # fmt: skip
    assert condition_text(facts) == (
        "(in segment buyers or not in list beta or not tagged vip or stage in lead, (no stage) or status disabled or not a contact)"
    )
