"""The management API's pure parts: refs, body rules, the commands a write becomes, the list query (only
parameters, never client text, in its SQL), cursors and the zero-filled daily series."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import ApiError
from api.keyset import encode_cursor
from api.user_model import UserCreate, UserPatch, create_records, delete_records, parse_ref, validate_create, validate_patch
from api.user_query import ListQuery, daily_series
from schemas.identity import IdentityCommand
from schemas.topics import Topics
from schemas.user_commands import Erasure, UserCommand, id_digest

AT = datetime(2026, 2, 1, tzinfo=UTC)


def rules(error: ApiError) -> set[tuple[str, str]]:
    return {(e.field, e.rule) for e in error.errors}


def test_refs_name_a_person_an_id_or_an_email():
    assert parse_ref("user_id:u:1").value == "u:1" and parse_ref("user_id:u:1").kind == "distinct_id"
    assert (parse_ref("email: Ada@X.io ").kind, parse_ref("email: Ada@X.io ").value) == ("email", "ada@x.io")
    person = "5f0c1a52-5e0a-4bd4-9d2a-1f6d4e3c2b1a"
    assert parse_ref(person.upper()).value == person
    for bad in ("nobody", "user_id:", "email:", "12"):
        with pytest.raises(ApiError) as refused:
            parse_ref(bad)
        assert refused.value.status == 422 and rules(refused.value) == {("ref", "format")}


def test_create_rules_are_named_each():
    with pytest.raises(ApiError) as refused:
        validate_create(UserCreate(first_name="x", properties={"email": "e@x.io", "a b": 1}))
    assert rules(refused.value) == {
        ("user_id", "required_identifier"),
        ("properties.email", "default_property"),
        ("properties.a b", "property_name"),
    }
    assert validate_create(UserCreate(email=" Ada@X.io", properties={"plan": "pro"})) == {"email": "ada@x.io", "plan": "pro"}


def test_patch_rules():
    with pytest.raises(ApiError) as refused:
        validate_patch(UserPatch(set={"email": "nope", "a": 1}, unset=["user_id", "a"]))
    assert rules(refused.value) == {("set.email", "email"), ("unset.user_id", "identifier_kept"), ("unset.a", "conflict")}


def test_a_create_is_a_claim_and_a_create_command_an_erase_also_suppresses_digests_only():
    topics = Topics(prefix="t")
    body = UserCreate(user_id="u1", email="a@b.co", tags=["vip", "vip"])
    claim, create = create_records(topics, validate_create(body), body, "p1", "c1", AT)
    assert claim.topic == "t.identity-commands" and create.topic == "t.user-commands" and create.key == "p1"
    assert IdentityCommand.model_validate_json(claim.value).model_dump(
        include={"kind", "person_id", "distinct_id", "user_id", "email"}
    ) == {"kind": "claim", "person_id": "p1", "distinct_id": "u1", "user_id": "u1", "email": "a@b.co"}
    assert UserCommand.model_validate_json(create.value).tags_add == ["vip"]
    records = delete_records(topics, "erase", "p1", ["u1", "a@b.co"], "c2", AT)
    assert [r.topic for r in records] == ["t.user-commands", "t.identity-commands", "t.erasures", "t.erasures"]
    for record in records:
        assert b"u1" not in record.value and b"a@b.co" not in record.value  # identifiers travel as digests only
    assert {Erasure.model_validate_json(r.value).id_digest for r in records[2:]} == {id_digest("u1"), id_digest("a@b.co")}


text = st.text(min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    q=text,
    status=st.sampled_from([None, "active", "disabled"]),
    tag=st.one_of(st.none(), text),
    properties=st.dictionaries(text, text, max_size=4),
    sort=st.sampled_from(["email", "-last_seen", "event_count"]),
)
def test_the_list_query_sql_holds_no_client_text(q, status, tag, properties, sort):
    query = ListQuery(q=q, status=status, tag=tag, properties=properties, sort=sort).check()
    sql, parameters = query.sql("person_id")
    fixed, _ = ListQuery(
        q="Q", status=status and "S", tag=tag and "T", properties={f"k{i}": "v" for i in range(len(properties))}, sort=sort
    ).sql("person_id")
    assert sql == fixed  # the same text whatever the values: they are all parameters
    assert parameters.get("q") == q and set(parameters.values()) >= set(properties.values())


def test_cursors_continue_after_the_last_row_and_refuse_forgeries():
    query = ListQuery(sort="-last_seen", limit=2)
    cursor = query.next_cursor({"last_seen": "2026-01-02T03:04:05.678000+00:00", "person_id": "p9"})
    following = ListQuery(sort="-last_seen", limit=2, cursor=cursor)
    sql, parameters = following.sql("person_id")
    assert "(last_seen, person_id) < ({after:DateTime64(3, 'UTC')}, {after_id:String})" in sql
    assert (parameters["after"], parameters["after_id"]) == ("2026-01-02 03:04:05.678", "p9")
    for forged in (encode_cursor(["email", "x", "p"]), encode_cursor(["last_seen", 5, "p"]), "%%%", encode_cursor([1])):
        with pytest.raises(ApiError):
            ListQuery(sort="-last_seen", cursor=forged).sql("person_id")
    # A count beyond its column's type (session_count is a UInt32) would be a query ClickHouse refuses: a 422 instead.
    with pytest.raises(ApiError):
        ListQuery(sort="session_count", cursor=encode_cursor(["session_count", 2**40, "p"])).sql("person_id")
    assert ListQuery(sort="session_count", cursor=encode_cursor(["session_count", 2**31, "p"])).sql("person_id")


@settings(max_examples=200, deadline=None)
@given(days=st.integers(1, 366), counts=st.dictionaries(st.integers(-400, 10), st.integers(1, 1000), max_size=20))
def test_daily_series_has_every_day_oldest_first_with_zeros(days, counts):
    today = date(2026, 6, 15)
    by_day = {(today + timedelta(days=offset)).isoformat(): n for offset, n in counts.items()}
    series = daily_series(by_day, today, days)
    assert len(series) == days and series[-1]["day"] == today.isoformat()
    assert [s["day"] for s in series] == sorted(s["day"] for s in series)
    assert sum(s["count"] for s in series) == sum(n for offset, n in counts.items() if -days < offset <= 0)
    assert orjson.loads(orjson.dumps(series)) == series
