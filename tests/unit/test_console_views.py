"""The console's pure parts: columns, list parameters, form fields from definitions, form posts to API bodies."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import ImmutableMultiDict, QueryParams

from api.console import people_view as view
from api.console.forms import create_body, create_form_fields, field_spec, property_of_error_field, typed_value

column_keys = st.sampled_from(list(view.COLUMNS))


@given(st.lists(st.one_of(column_keys, st.text(max_size=5), st.integers()), max_size=30))
def test_chosen_columns_are_known_distinct_and_never_empty(saved):
    chosen = view.chosen_columns(saved)
    assert chosen and len(chosen) == len(set(chosen)) and all(c in view.COLUMNS for c in chosen)


@given(st.lists(column_keys, unique=True, min_size=1), column_keys, st.integers(-5, 5))
def test_moving_a_column_keeps_the_same_columns(columns, key, step):
    moved = view.move_column(columns, key, step)
    assert sorted(moved) == sorted(columns)
    if key in columns:
        expected = max(0, min(len(columns) - 1, columns.index(key) + step))
        assert moved.index(key) == expected


def test_defaults_match_the_issue_columns():
    assert view.chosen_columns(None) == list(view.DEFAULT_COLUMNS)
    assert view.move_column(["a", "b", "c"], "c", -1) == ["a", "c", "b"]


def test_list_params_carry_filters_properties_sort_and_cursor():
    params = QueryParams(
        "q=ann&status=disabled&tag=&kind=contact&f0.name=plan&f0.value=pro&f1.name=&f1.value=x&properties.city=Oslo&sort=email&cursor=abc"
    )
    assert view.api_list_params(params) == {
        "q": "ann",
        "status": "disabled",
        "kind": "contact",
        "properties.plan": "pro",
        "properties.city": "Oslo",
        "sort": "email",
        "limit": view.PAGE_SIZE,
        "cursor": "abc",
    }
    assert view.api_filter(params) == {"q": "ann", "status": "disabled", "kind": "contact", "properties": {"plan": "pro", "city": "Oslo"}}


def test_sort_link_toggles_direction_and_drops_the_cursor():
    column = view.COLUMNS["email"]
    first = dict(parse_qsl(view.sort_link(QueryParams("q=a&cursor=zz"), column)))
    assert first == {"q": "a", "sort": "-email"}
    again = dict(parse_qsl(view.sort_link(QueryParams("sort=-email"), column)))
    assert again == {"sort": "email"}
    assert view.sort_link(QueryParams(""), view.COLUMNS["tags"]) is None


def test_display_name_falls_back_to_the_visitor_alias():
    assert view.display_name({"name": "Ann Lee"}) == "Ann Lee"
    assert view.display_name({"properties": {"first_name": "Ann", "last_name": "Lee"}}) == "Ann Lee"
    assert view.display_name({"email": "a@b.co"}) == "a@b.co"
    assert view.display_name({"visitor_number": 451}) == "Visitor 451"
    assert view.display_name({"visitor_alias": "Visitor 7", "visitor_number": 7}) == "Visitor 7"


def test_field_spec_turns_constraints_into_browser_attributes():
    spec = field_spec({"name": "seats", "type": "integer", "minimum": 1, "maximum": 500, "required": True}, custom=True)
    assert spec.input_type == "number" and spec.required and spec.custom
    assert spec.attributes == {"step": "1", "min": "1", "max": "500"}
    plan = field_spec({"name": "plan", "type": "enum", "options": ["free", "pro"]}, custom=True)
    assert plan.options == ("free", "pro")
    code = field_spec({"name": "code", "type": "string", "pattern": "^[A-Z]{3}$", "min_length": 3}, custom=True)
    assert code.attributes["data-pattern"] == "^[A-Z]{3}$" and code.attributes["minlength"] == "3"


def test_create_form_lists_defaults_then_custom_properties_and_marks_identifiers():
    fields = create_form_fields(
        [
            {"name": "plan", "type": "enum", "options": ["a"]},
            {"name": "email", "type": "email", "built_in": True},
            {"name": "gone", "type": "string", "deleted": True},
        ]
    )
    names = [f.name for f in fields]
    assert names[:4] == ["user_id", "email", "phone", "customer_id"] and names[-1] == "plan" and "gone" not in names
    assert [f.name for f in fields if f.identifier] == ["user_id", "email", "phone", "customer_id"]


def test_create_body_types_values_and_requires_an_identifier():
    fields = create_form_fields([{"name": "seats", "type": "integer"}, {"name": "trial", "type": "boolean"}])
    body, errors = create_body(
        fields, ImmutableMultiDict({"prop.email": " a@b.co ", "prop.seats": "12", "prop.trial": "on", "tags": "x, y"})
    )
    assert errors == {}
    assert body == {"email": "a@b.co", "properties": {"seats": 12, "trial": True}, "tags": ["x", "y"]}
    _, errors = create_body(fields, {"prop.first_name": "Ann", "prop.seats": "1.5"})
    assert set(errors) == {"user_id", "seats"}


@given(st.text(max_size=20))
def test_typed_value_never_raises_and_integers_are_whole(text):
    spec = field_spec({"name": "n", "type": "integer"}, custom=True)
    value, error = typed_value(spec, text)
    assert (error is None) or value is None
    assert value is None or isinstance(value, int)


def test_api_error_fields_map_to_properties():
    assert property_of_error_field("properties.plan") == "plan"
    assert property_of_error_field("set.plan") == "plan"
    assert property_of_error_field("update.set.plan") == "plan"
    assert property_of_error_field("email") == "email"


def test_durations_read_as_people_write_them():
    assert view.duration_text(12) == "12s"
    assert view.duration_text(245) == "4m 05s"
    assert view.duration_text(3720) == "1h 02m"
    assert view.duration_text(None) == ""


def test_definition_form_reads_constraints_and_says_them_back():
    from api.console.definitions_view import constraints_text, definition_body, form_values

    body, errors = definition_body(
        {"type": "integer", "label": "Seats", "minimum": "1", "maximum": "100", "required": "on", "min_length": "x", "options": ""}
    )
    assert body == {"type": "integer", "label": "Seats", "minimum": 1.0, "maximum": 100.0, "required": True, "unique": False}
    assert set(errors) == {"min_length"}
    enum, _ = definition_body({"type": "enum", "options": "free, pro\nteam"})
    assert enum["options"] == ["free", "pro", "team"]
    definition = {"name": "seats", "type": "integer", "minimum": 1, "maximum": 100, "required": True}
    assert constraints_text(definition) == "required, 1 ≤ value ≤ 100"
    assert constraints_text({"min_length": 3, "pattern": "^[A-Z]+$", "options": ["a", "b"]}) == "length 3-∞, matches ^[A-Z]+$, one of: a, b"
    again, errors = definition_body(form_values(definition))
    assert errors == {} and again["minimum"] == 1 and again["maximum"] == 100 and again["required"] is True
