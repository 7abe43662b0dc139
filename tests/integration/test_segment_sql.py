"""The segment compiler against ClickHouse (chdb): for generated persons, events and conditions, the compiled SQL
selects exactly the persons the pure reference evaluator (schemas/segments.py) says meet the condition."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.conditions import (
    ConditionGroup,
    EventCondition,
    IdentityCondition,
    LastSeenCondition,
    ListCondition,
    PropertyCondition,
    SegmentCondition,
    SessionCountCondition,
    StageCondition,
    StatusCondition,
    TagCondition,
)
from schemas.segments import OPERATORS_BY_TYPE, PersonFacts, SegmentDefinition, compile_segment, evaluate_segment, property_type

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY = 86_400_000
# The last name needs escaping in JSON; the value "plan" puts the first name's quoted text where no such key is.
CUSTOM = ["plan", "seats", "beta", "signup", 'plän "v2"\\']
COLUMNS = ["email", "$email_domain", "$visitor_number", "$is_free_email", "$last_seen", "$session_count"]

texts = st.text(alphabet="ab1.-e ", max_size=5)
moments = st.integers(NOW_MS - 60 * DAY, NOW_MS).map(lambda ms: ms - ms % 1000)
iso = moments.map(lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat())
naive_iso = moments.map(lambda ms: datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None).isoformat())
scalars = st.one_of(texts, st.integers(-5, 5), st.integers(-20, 20).map(lambda n: n / 4), st.booleans(), iso, naive_iso)
json_values = st.one_of(scalars, st.none(), st.just({"x": 1}), st.just([1]), st.just("plan"), st.just({"plan": "b"}))


@st.composite
def persons(draw) -> list[PersonFacts]:
    found = []
    for index in range(draw(st.integers(1, 6))):
        email = draw(st.sampled_from(["", "a@gmail.com", "b@acme.io", "A@Acme.io"]))
        domain = email.split("@")[1].lower() if email else ""
        columns = {
            "email": email,
            "email_domain": domain,
            "is_free_email": domain == "gmail.com",
            "visitor_number": draw(st.integers(0, 10)),
            "is_identified": draw(st.booleans()),
            "is_contact": bool(email),
            "session_count": draw(st.integers(0, 5)),
            "last_seen": draw(st.one_of(st.just(0), moments)),
            "tags": draw(st.lists(st.sampled_from(["vip", "beta"]), unique=True)),
            "lists": draw(st.lists(st.sampled_from(["l1", "l2"]), unique=True)),
            "stage": draw(st.sampled_from(["", "lead", "customer"])),
            "status": draw(st.sampled_from(["active", "disabled"])),
        }
        properties = {k: v for k in CUSTOM if (v := draw(json_values)) is not None or draw(st.booleans())}
        events = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["Order Completed", "Signup"]),
                    moments,
                    st.fixed_dictionaries({}, optional={"total": st.one_of(st.integers(0, 100), texts)}),
                ),
                max_size=4,
            )
        )
        found.append(PersonFacts(f"person-{index}", columns, properties, events))
    return found


@st.composite
def property_conditions(draw, names=(*CUSTOM, *COLUMNS)) -> PropertyCondition:
    name = draw(st.sampled_from(names))
    operator = draw(st.sampled_from(OPERATORS_BY_TYPE[property_type(name)]))
    if operator in ("is_set", "is_not_set"):
        value = None
    elif operator in ("in", "not_in"):
        value = draw(st.lists(st.one_of(texts, st.integers(-5, 5), st.booleans()), min_size=1, max_size=3))
    elif operator in ("contains", "not_contains", "starts_with", "ends_with"):
        value = draw(texts)
    elif operator in ("gt", "gte", "lt", "lte"):
        value = draw(st.integers(-20, 20).map(lambda n: n / 4))
    elif operator in ("before", "after"):
        value = draw(st.one_of(iso, moments))
    else:
        value = draw(st.one_of(texts, st.integers(-5, 5), st.booleans(), st.just("b@acme.io"), st.just("gmail.com")))
    return PropertyCondition(property=name, operator=operator, value=value)


leaves = st.one_of(
    property_conditions(),
    st.builds(TagCondition, operator=st.sampled_from(["has", "has_not"]), tag=st.sampled_from(["vip", "beta"])),
    st.builds(ListCondition, operator=st.sampled_from(["in", "not_in"]), list_id=st.sampled_from(["l1", "l2"])),
    st.builds(
        StageCondition, operator=st.sampled_from(["in", "not_in"]), stages=st.lists(st.sampled_from(["", "lead", "customer"]), min_size=1)
    ),
    st.builds(StatusCondition, status=st.sampled_from(["active", "disabled"])),
    st.builds(IdentityCondition, identity=st.sampled_from(["identified", "anonymous", "contact", "not_contact"])),
    st.builds(SessionCountCondition, operator=st.sampled_from(["equals", "not_equals", "gt", "gte", "lt", "lte"]), value=st.integers(0, 5)),
    st.builds(LastSeenCondition, operator=st.sampled_from(["within", "not_within"]), days=st.integers(1, 70)),
    st.builds(
        EventCondition,
        event=st.sampled_from(["Order Completed", "Signup"]),
        operator=st.just("at_least"),
        count=st.integers(1, 3),
        days=st.integers(1, 45),
        where=st.one_of(st.none(), property_conditions(names=("total",))),
    ),
    st.builds(
        EventCondition,
        event=st.sampled_from(["Order Completed", "Signup"]),
        operator=st.just("at_most"),
        count=st.integers(0, 2),
        days=st.integers(1, 45),
        where=st.one_of(st.none(), property_conditions(names=("total",))),
    ),
    st.builds(SegmentCondition, operator=st.sampled_from(["in", "not_in"]), segment_id=st.just("base")),
)
conditions = st.recursive(
    leaves,
    lambda children: st.builds(ConditionGroup, match=st.sampled_from(["all", "any"]), conditions=st.lists(children, max_size=3)),
    max_leaves=6,
).map(lambda c: c if isinstance(c, ConditionGroup) else ConditionGroup(conditions=[c]))

BASE = SegmentDefinition(
    id="base",
    name="base",
    condition=ConditionGroup(
        match="any", conditions=[TagCondition(tag="vip"), PropertyCondition(property="seats", operator="gte", value=2)]
    ),
    created_at=NOW,
    updated_at=NOW,
)


def _store(client, database: str, people: list[PersonFacts]) -> None:
    client.command(f"TRUNCATE TABLE {database}.persons")
    client.command(f"TRUNCATE TABLE {database}.events")
    columns = ["person_id", "version", "properties", *people[0].columns]
    rows = []
    for person in people:
        values = dict(person.columns)
        values["last_seen"] = datetime.fromtimestamp(values["last_seen"] / 1000, UTC)
        rows.append([person.person_id, 1, orjson.dumps(person.properties).decode(), *values.values()])
    client.insert(f"{database}.persons", rows, column_names=columns)
    events = [
        [
            f"{person.person_id}-{index}",
            datetime.fromtimestamp(at / 1000, UTC),
            "track",
            name,
            person.person_id,
            person.person_id,
            orjson.dumps(props).decode(),
        ]
        for person in people
        for index, (name, at, props) in enumerate(person.events)
    ]
    if events:
        client.insert(
            f"{database}.events",
            events,
            column_names=["message_id", "timestamp", "type", "event", "distinct_id", "person_id", "properties"],
        )


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(people=persons(), condition=conditions)
def test_compiled_sql_selects_who_the_reference_evaluator_selects(clickhouse_client, database, people, condition):
    _store(clickhouse_client, database, people)
    segments = {"base": BASE}
    compiled = compile_segment(condition, segments, NOW)
    sql = compiled.members_sql().replace("{db}", database)
    selected = {row[0] for row in clickhouse_client.query(sql, parameters=compiled.parameters).result_rows}
    expected = {p.person_id for p in people if evaluate_segment(condition, p, segments, NOW_MS)}
    assert selected == expected, (sql, compiled.parameters)


def test_values_only_travel_as_parameters():
    condition = ConditionGroup(
        conditions=[
            PropertyCondition(property="plan'); DROP TABLE x; --", operator="equals", value="x' OR 1=1 --"),
            EventCondition(event="a'b", count=1, days=1),
            TagCondition(tag="'"),
        ]
    )
    compiled = compile_segment(condition, {}, NOW)
    assert "DROP" not in compiled.where and "'b" not in compiled.where and "OR 1=1" not in compiled.where
    assert set(compiled.parameters.values()) >= {"plan'); DROP TABLE x; --", "x' OR 1=1 --", "a'b", "'"}
