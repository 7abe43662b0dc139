"""CSV import, the pure part (api/import_rows.py): column plans, row checks, command ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.import_rows import ImportOptions, ImportRefused, ImportRow, plan_columns, read_row
from schemas.properties import BUILT_IN, PropertyDefinition

RULES = {
    **BUILT_IN,
    "plan": PropertyDefinition(name="plan", type="enum", options=["free", "pro"]),
    "age": PropertyDefinition(name="age", type="integer", minimum=18),
    "segment": PropertyDefinition(name="segment", type="string", required=True),
}


def plan(header, **options):
    return plan_columns(header, ImportOptions(**options), RULES)


def test_columns_map_by_name_by_normalised_header_and_by_explicit_mapping():
    columns = plan(["User ID", "E-mail", "First Name", "plan", "Tier", "shoe size"], mapping={"E-mail": "email", "Tier": "segment"})
    assert columns.properties == ("user_id", "email", "first_name", "plan", "segment", None)
    assert columns.ignored == ["shoe size"]
    assert plan(["user_id", "shoe size"], include_unknown=True).properties == ("user_id", "shoe_size")


@pytest.mark.parametrize(
    ("header", "options", "field"),
    [
        (["email"], {}, "dedupe"),
        (["user_id", "x"], {"mapping": {"y": "plan"}}, "mapping.y"),
        (["user_id", "x"], {"mapping": {"x": "not a name"}}, "mapping.x"),
        (["user_id", "x"], {"mapping": {"x": "user_id"}}, "mapping"),
        (["user_id", "user_id"], {}, "header"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_before_any_row(header, options, field):
    with pytest.raises(ImportRefused) as refused:
        plan(header, **options)
    assert refused.value.field == field


def test_rows_are_checked_from_text_and_every_broken_rule_named():
    columns = plan(["user_id", "email", "plan", "age", "segment"])
    good = read_row(2, ["u1", " Ann@Example.com ", "pro", "42", "smb"], columns, ImportOptions(), RULES)
    assert isinstance(good, ImportRow)
    assert good.properties == {"user_id": "u1", "email": "ann@example.com", "plan": "pro", "age": 42, "segment": "smb"}
    bad = read_row(3, ["u2", "nope", "gold", "17", ""], columns, ImportOptions(), RULES)
    assert {(e.row, e.column, e.value, e.rule) for e in bad} == {
        (3, "email", "nope", "type"),
        (3, "plan", "gold", "options"),
        (3, "age", "17", "minimum"),
        (3, "segment", "", "required"),
    }
    assert read_row(4, ["", "a@example.com", "", "", "x"], columns, ImportOptions(), RULES)[0].rule == "required"  # no dedupe key
    assert read_row(5, ["undefined", "", "", "", "x"], columns, ImportOptions(), RULES)[0].rule == "placeholder"
    assert read_row(6, ["u3"], columns, ImportOptions(), RULES)[0].rule == "columns"


cells = st.text(alphabet="abcXYZ019 @.", max_size=8)


@settings(deadline=None)  # the first email check loads email-validator's data: slow on a busy machine
@given(st.lists(cells, min_size=3, max_size=3), st.lists(cells, min_size=3, max_size=3))
def test_the_command_id_is_the_key_and_the_content(first, second):
    columns = plan(["user_id", "first_name", "city"])
    one = read_row(2, ["u1", *first[1:]], columns, ImportOptions(), RULES)
    again = read_row(9, ["u1", *first[1:]], columns, ImportOptions(), RULES)
    other = read_row(2, ["u1", *second[1:]], columns, ImportOptions(), RULES)
    assert one.command_id == again.command_id  # the same row, anywhere in any file
    assert (one.command_id == other.command_id) == (one.properties == other.properties)
    assert read_row(2, ["u2", *first[1:]], columns, ImportOptions(), RULES).command_id != one.command_id
