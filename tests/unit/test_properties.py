"""Property definitions and the validator (schemas/properties.py): every type, every constraint, by example."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.properties import BUILT_IN, PropertyDefinition, change_problems, check_values, effective, unique_values


def define(**fields) -> dict[str, PropertyDefinition]:
    d = PropertyDefinition(name=fields.pop("name", "p"), **fields)
    return {**BUILT_IN, d.name: d}


def only_error(definitions, set_=None, unset=(), **options):
    checked = check_values(definitions, set_ or {}, unset, **options)
    assert len(checked.errors) == 1, checked.errors
    return checked.errors[0]


@pytest.mark.parametrize(
    ("fields", "value", "rule"),
    [
        ({"type": "string"}, 3, "type"),
        ({"type": "number"}, "3", "type"),
        ({"type": "number"}, True, "type"),
        ({"type": "number"}, float("nan"), "type"),
        ({"type": "integer"}, 2.5, "type"),
        ({"type": "integer"}, 2**64, "type"),
        ({"type": "boolean"}, "true", "type"),
        ({"type": "datetime"}, "yesterday", "type"),
        ({"type": "datetime"}, True, "type"),
        ({"type": "enum", "options": ["free", "pro"]}, "Pro", "options"),
        ({"type": "email"}, "ann.example.com", "type"),
        ({"type": "email"}, "ann@", "type"),
        ({"type": "phone"}, "020 7946 0000", "type"),
        ({"type": "phone"}, "+44 20 1", "type"),
        ({"type": "url"}, "ftp://example.com/x", "type"),
        ({"type": "url"}, "not a url", "type"),
        ({"type": "integer", "minimum": 18}, 17, "minimum"),
        ({"type": "number", "maximum": 1.5}, 1.51, "maximum"),
        ({"type": "string", "min_length": 2}, "a", "min_length"),
        ({"type": "string", "max_length": 3}, "abcd", "max_length"),
        ({"type": "email", "max_length": 10}, "someone@example.com", "max_length"),
        ({"type": "string", "pattern": "^[A-Z]{2}-\\d+$"}, "ab-12", "pattern"),
        ({"type": "string", "required": True}, None, "required"),
        ({"type": "string", "required": True}, "  ", "required"),
    ],
)
def test_every_type_and_constraint_refuses_naming_the_property_and_rule(fields, value, rule):
    error = only_error(define(**fields), {"p": value})
    assert (error.property, error.rule) == ("p", rule)
    assert error.reason
    assert error.value_type == {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}[type(value)]


@pytest.mark.parametrize(
    ("fields", "value", "kept"),
    [
        ({"type": "string", "min_length": 1, "max_length": 3}, "abc", "abc"),
        ({"type": "number", "minimum": 0, "maximum": 1}, 0.5, 0.5),
        ({"type": "integer", "minimum": 18}, 18, 18),
        ({"type": "integer"}, 3.0, 3),
        ({"type": "boolean"}, False, False),
        ({"type": "datetime"}, "2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00.000Z"),
        ({"type": "datetime"}, 0, "1970-01-01T00:00:00.000Z"),
        ({"type": "enum", "options": ["free", "pro"]}, "pro", "pro"),
        ({"type": "email"}, "ann@example.com", "ann@example.com"),
        ({"type": "phone"}, "+44 20 7946 0018", "+44 20 7946 0018"),
        ({"type": "url"}, "https://example.com/a?b=c", "https://example.com/a?b=c"),
        ({"type": "string", "pattern": "^[A-Z]{2}-\\d+$"}, "AB-12", "AB-12"),
        ({"type": "string"}, None, None),
    ],
)
def test_valid_values_pass_normalised(fields, value, kept):
    checked = check_values(define(**fields), {"p": value})
    assert checked.ok, checked.errors
    assert checked.values == {"p": kept}


def test_built_in_defaults_are_typed():
    error = only_error(BUILT_IN, {"email": "not-an-address", "first_name": "Ann"})
    assert (error.property, error.rule) == ("email", "type")
    assert only_error(BUILT_IN, {"phone": "12"}).property == "phone"
    assert set(BUILT_IN) == {
        "user_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "customer_id",
        "name",
        "company",
        "city",
        "country",
        "timezone",
    }


def test_properties_without_a_definition_pass_as_sent():
    checked = check_values(BUILT_IN, {"favourite": {"colour": "red"}})
    assert checked.ok and checked.values == {"favourite": {"colour": "red"}}


def test_required_on_create_and_on_unset():
    definitions = define(type="string", required=True)
    assert only_error(definitions, {"email": "a@example.com"}, creating=True).rule == "required"
    assert check_values(definitions, {"p": "x"}, creating=True).ok
    assert check_values(definitions, {"email": "a@example.com"}).ok  # an update need not repeat it
    error = only_error(definitions, {}, ["p"])
    assert (error.property, error.rule) == ("p", "required")
    assert check_values(definitions, {}, ["email"]).unset == ["email"]


def test_from_text_parses_cells():
    definitions = {
        **BUILT_IN,
        "age": PropertyDefinition(name="age", type="integer"),
        "score": PropertyDefinition(name="score", type="number"),
        "vip": PropertyDefinition(name="vip", type="boolean"),
    }
    checked = check_values(definitions, {"age": "42", "score": "1.5", "vip": "Yes", "city": ""}, from_text=True)
    assert checked.ok and checked.values == {"age": 42, "score": 1.5, "vip": True, "city": None}
    assert only_error(definitions, {"age": "forty"}, from_text=True).rule == "type"
    assert only_error(definitions, {"age": "42"}).rule == "type"  # JSON: a string is not a number


def test_unique_values_are_the_ones_to_look_up():
    definitions = define(type="string", unique=True)
    assert unique_values(definitions, {"p": "x", "email": "a@example.com", "city": "Oslo", "q": 1}) == {"p": "x", "email": "a@example.com"}


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "enum"},
        {"type": "string", "options": ["a"]},
        {"type": "enum", "options": ["a", "a"]},
        {"type": "string", "minimum": 1},
        {"type": "integer", "minimum": 2, "maximum": 1},
        {"type": "number", "min_length": 1},
        {"type": "string", "min_length": 3, "max_length": 2},
        {"type": "boolean", "pattern": "x"},
        {"type": "string", "pattern": "(unclosed"},
        {"type": "string", "pattern": "(a)\\1"},  # backreferences: not RE2
        {"type": "colour"},
        {"type": "string", "name": "has space"},
    ],
)
def test_inconsistent_definitions_are_refused(fields):
    with pytest.raises(ValidationError):
        PropertyDefinition(**{"name": "p", **fields})


def test_built_ins_keep_their_type_and_cannot_be_deleted():
    email = BUILT_IN["email"]
    assert change_problems(email, email.model_copy(update={"required": True, "version": 2})) == []
    assert change_problems(email, PropertyDefinition(name="email", type="string", built_in=True))[0][0] == "type"
    assert change_problems(None, PropertyDefinition(name="plan", type="string", built_in=True))[0][0] == "built_in"
    deleted = email.model_copy(update={"deleted": True, "version": 2})
    assert effective([deleted])["email"] == email


def test_effective_takes_each_names_newest_version():
    v1 = PropertyDefinition(name="plan", type="string", version=1)
    v2 = PropertyDefinition(name="plan", type="enum", options=["free"], version=2)
    gone = PropertyDefinition(name="plan", type="enum", options=["free"], version=3, deleted=True)
    assert effective([v2, v1])["plan"] == v2
    assert "plan" not in effective([v1, gone, v2])
