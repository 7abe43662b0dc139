"""CSV import, the pure part (api/import_rows.py): column plans, row checks, command ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.import_rows import CellVerdicts, ImportOptions, ImportRefused, ImportRow, command_id_of, plan_columns, read_row, uuid5_text
from api.imports import records_for
from api.user_model import UserCreate, create_records
from schemas.identity import PERSON_NAMESPACE
from schemas.properties import BUILT_IN, PropertyDefinition
from schemas.topics import Topics
from schemas.user_commands import DEFAULT_PROPERTIES

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


@settings(deadline=None)
@given(st.uuids(), st.text(max_size=40))
def test_uuid5_text_is_uuid5(namespace, name):
    assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


def test_a_stage_longer_than_the_api_takes_is_a_row_error_not_a_failed_import():
    columns = plan(["user_id", "stage"])
    assert isinstance(read_row(2, ["u1", "s" * 64], columns, ImportOptions(), RULES), ImportRow)
    (error,) = read_row(3, ["u1", "s" * 65], columns, ImportOptions(), RULES)
    assert (error.row, error.column, error.rule) == (3, "stage", "max_length")


TOPICS = Topics("t")
AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
texts = st.text(alphabet="abcXYZ019 .-", min_size=1, max_size=12).map(str.strip).filter(bool)


@settings(deadline=None)
@given(
    st.fixed_dictionaries(
        {"user_id": texts},
        optional={
            "first_name": texts,
            "city": texts,
            "customer_id": texts,
            "email": st.just("ann@example.com"),
            "plan": st.sampled_from(["free", "pro"]),
            "age": st.integers(18, 99),
        },
    ),
    st.none() | st.sampled_from(["lead", "customer"]),
)
def test_an_imported_rows_create_is_what_the_validated_api_body_gives(properties, stage):
    """records_for skips building a validated UserCreate per row: the records are the same as with it."""
    row = ImportRow(2, properties["user_id"], properties, command_id_of("user_id", properties["user_id"], properties), stage)
    defaults = {k: str(v) for k, v in properties.items() if k in DEFAULT_PROPERTIES}
    body = UserCreate(**defaults, properties={k: v for k, v in properties.items() if k not in DEFAULT_PROPERTIES}, stage=stage)
    person_id = str(uuid.uuid5(PERSON_NAMESPACE, f"command:{row.command_id}"))
    assert records_for(row, None, "user_id", TOPICS, AT) == create_records(
        TOPICS, properties, body, person_id, row.command_id, AT, by="import"
    )


any_cells = st.sampled_from(["", " ", "u1", "pro", "gold", "17", "42", "forty", "ann@example.com", "nope", "smb", "yes"])


@settings(deadline=None)
@given(st.lists(st.lists(any_cells, min_size=6, max_size=6), min_size=1, max_size=30))
def test_remembered_cell_checks_give_what_checking_every_row_gives(rows):
    """CellVerdicts answers each row as read_row without it does, whatever came before (errors included)."""
    columns = plan(["user_id", "email", "plan", "age", "segment", "nickname"], include_unknown=True)
    verdicts = CellVerdicts()
    for number, cells in enumerate(rows, start=2):
        assert read_row(number, cells, columns, ImportOptions(), RULES, verdicts) == read_row(
            number, cells, columns, ImportOptions(), RULES
        )
