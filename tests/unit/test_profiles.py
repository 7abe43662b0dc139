"""The profile reducer, rule by rule, and the persons table against a real ClickHouse."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

import orjson
import pytest

from projections.profiles import (
    EMPTY,
    PERSONS,
    REMOVED,
    Mark,
    ProfileState,
    fold,
    merge,
    person_row,
    properties_of,
)
from schemas.events import EnrichedEvent
from schemas.identity import PersonIdentity

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
CHROME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)
IPAD = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"


def ev(message_id: str, seconds: float, type: str = "track", **fields: Any) -> EnrichedEvent:
    return EnrichedEvent(
        message_id=message_id,
        type=type,
        anonymous_id="anon-1",
        timestamp=T0 + timedelta(seconds=seconds),
        received_at=T0,
        source_id="web",
        person_id="p1",
        **fields,
    )


def sets(message_id: str, seconds: float, **ops: Any) -> EnrichedEvent:
    """A track call carrying PostHog-style $set / $set_once / $unset (pass them as set=, set_once=, unset=)."""
    return ev(message_id, seconds, properties={f"${op}": value for op, value in ops.items()})


def web(message_id: str, seconds: float, referrer: str = "", campaign: dict | None = None, **fields) -> EnrichedEvent:
    context: dict[str, Any] = {"page": {"url": "https://shop.example/", "referrer": referrer}}
    if campaign is not None:
        context["campaign"] = campaign
    return ev(message_id, seconds, type="page", context=context, **fields)


def run(*events: EnrichedEvent, state: ProfileState = EMPTY) -> ProfileState:
    return reduce(fold, events, state)


def both_orders(*events: EnrichedEvent) -> ProfileState:
    forward, backward = run(*events), run(*reversed(events))
    assert forward == backward
    return forward


def row_of(state: ProfileState, identity: PersonIdentity | None = None, **kwargs) -> dict[str, Any]:
    values = person_row("p1", state, identity, event_count=3, session_count=1, version=1, **kwargs)
    return dict(zip(PERSONS.column_names, values, strict=True))


# -- properties: identify traits, $set, $set_once, $unset ---------------------------------------------------


def test_identify_traits_become_properties_and_group_traits_do_not():
    state = run(
        ev("m1", 0, type="identify", user_id="u1", traits={"plan": "pro", "email": "ann@acme.com"}),
        ev("m2", 1, type="group", group_id="g1", traits={"plan": "enterprise", "employees": 40}),
    )
    assert properties_of(state) == {"plan": "pro", "email": "ann@acme.com"}


def test_set_latest_by_event_time_wins_whatever_the_arrival_order():
    state = both_orders(sets("m1", 10, set={"plan": "pro"}), sets("m2", 5, set={"plan": "free", "seats": 3}))
    assert properties_of(state) == {"plan": "pro", "seats": 3}


def test_traits_and_set_compete_by_time():
    state = both_orders(ev("m1", 10, type="identify", traits={"plan": "pro"}), sets("m2", 20, set={"plan": "team"}))
    assert properties_of(state)["plan"] == "team"


def test_a_tie_in_event_time_goes_to_the_greater_message_id():
    state = both_orders(sets("m-a", 1, set={"plan": "a"}), sets("m-b", 1, set={"plan": "b"}))
    assert properties_of(state)["plan"] == "b"


def test_event_time_counts_in_whole_milliseconds():
    state = both_orders(sets("m-b", 1.0001, set={"plan": "b"}), sets("m-a", 1.0009, set={"plan": "a"}))
    assert properties_of(state)["plan"] == "b"  # same millisecond: the message id decides


def test_unset_removes_a_property():
    state = both_orders(sets("m1", 1, set={"plan": "pro", "seats": 3}), sets("m2", 2, unset=["plan"]))
    assert properties_of(state) == {"seats": 3}


def test_unset_is_a_tombstone_that_loses_to_a_later_set_even_when_it_arrives_last():
    state = both_orders(sets("m1", 1, unset=["plan"]), sets("m2", 2, set={"plan": "pro"}))
    assert properties_of(state) == {"plan": "pro"}


def test_within_one_call_unset_beats_set_beats_traits():
    state = run(
        ev(
            "m1",
            0,
            type="identify",
            traits={"a": "trait", "b": "trait"},
            properties={"$set": {"a": "set", "b": "set"}, "$unset": ["b"]},
        )
    )
    assert properties_of(state) == {"a": "set"}


def test_set_may_write_null():
    assert properties_of(both_orders(sets("m1", 1, set={"plan": "pro"}), sets("m2", 2, set={"plan": None}))) == {"plan": None}


def test_set_once_keeps_the_earliest_value():
    state = both_orders(sets("m1", 5, set_once={"source": "ads"}), sets("m2", 1, set_once={"source": "blog"}))
    assert properties_of(state) == {"source": "blog"}


def test_set_once_yields_to_any_set_earlier_or_later():
    earlier = both_orders(sets("m1", 1, set={"plan": "pro"}), sets("m2", 2, set_once={"plan": "free"}))
    later = both_orders(sets("m1", 1, set_once={"plan": "free"}), sets("m2", 2, set={"plan": "pro"}))
    assert properties_of(earlier) == properties_of(later) == {"plan": "pro"}


def test_set_once_does_not_bring_back_an_unset_key():
    state = both_orders(sets("m1", 1, unset=["plan"]), sets("m2", 2, set_once={"plan": "free"}))
    assert properties_of(state) == {}


def test_malformed_shapes_are_ignored():
    state = run(
        sets("m1", 1, set="plan=pro", set_once=["x"], unset="plan"),
        sets("m2", 2, unset=["ok", 3, None]),
        ev("m3", 3, type="identify", properties={"$set": {"kept": 1}}),
    )
    assert properties_of(state) == {"kept": 1}
    assert state.props["ok"].value is REMOVED


# -- email, name, phone ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "domain", "free", "company"),
    [
        ("ann@acme.com", "acme.com", False, "acme.com"),
        ("Ann@ACME.com.", "acme.com", False, "acme.com"),
        ("bob@gmail.com", "gmail.com", True, ""),
        ("bob@proton.me", "proton.me", True, ""),
        ("carol@web.de", "web.de", True, ""),
        ("not-an-email", "", False, ""),
        ("@acme.com", "", False, ""),
        (42, "", False, ""),
    ],
)
def test_email_derivations(email, domain, free, company):
    row = row_of(run(ev("m1", 0, type="identify", traits={"email": email})))
    assert (row["email_domain"], row["is_free_email"], row["company_domain"]) == (domain, free, company)
    assert row["email"] == (email if isinstance(email, str) else "")


@pytest.mark.parametrize(
    ("traits", "name"),
    [
        ({"name": "Ann Lee", "first_name": "A"}, "Ann Lee"),
        ({"first_name": "Ann", "last_name": "Lee"}, "Ann Lee"),
        ({"firstName": "Ann", "lastName": "Lee"}, "Ann Lee"),
        ({"first_name": "Ann"}, "Ann"),
        ({"name": ["not", "text"]}, ""),
        ({}, ""),
    ],
)
def test_name_is_the_name_trait_else_first_and_last(traits, name):
    assert row_of(run(ev("m1", 0, type="identify", traits=traits)))["name"] == name


def test_phone_comes_from_the_phone_property():
    assert row_of(run(sets("m1", 0, set={"phone": "+44 20 7946 0000"})))["phone"] == "+44 20 7946 0000"


# -- interactions: first/last seen, initial touch, last device ----------------------------------------------


def test_first_and_last_seen_span_every_event():
    row = row_of(both_orders(ev("m1", 30), ev("m2", -10, type="identify"), ev("m3", 5)))
    assert (row["first_seen"], row["last_seen"]) == (T0 - timedelta(seconds=10), T0 + timedelta(seconds=30))


def test_initial_touch_comes_from_the_earliest_web_event():
    state = both_orders(
        ev("m0", -60, type="identify", traits={"plan": "pro"}),  # server-side: no web context
        web("m1", 0, "https://www.Google.com/search?q=shoes", {"source": "google", "medium": "cpc", "name": "spring"}),
        web("m2", 60, "https://news.example/", {"source": "newsletter"}),
    )
    row = row_of(state)
    assert row["initial_referrer"] == "https://www.Google.com/search?q=shoes"
    assert row["initial_referring_domain"] == "google.com"
    assert [row[f"initial_utm_{f}"] for f in ("source", "medium", "campaign", "term", "content")] == ["google", "cpc", "spring", "", ""]


def test_a_direct_first_visit_stays_direct_despite_later_internal_referrers():
    row = row_of(both_orders(web("m1", 0), web("m2", 10, "https://shop.example/")))
    assert (row["initial_referrer"], row["initial_referring_domain"], row["initial_utm_source"]) == ("", "", "")


def test_a_campaign_without_page_context_is_a_touch():
    app = ev("m1", 0, context={"campaign": {"source": "app-push", "term": 7}})
    row = row_of(both_orders(app, web("m2", 5, "https://a.example/")))
    assert (row["initial_utm_source"], row["initial_utm_term"], row["initial_referrer"]) == ("app-push", "", "")


def test_last_device_is_the_latest_event_with_a_user_agent():
    state = both_orders(
        ev("m1", 0, user_agent=SAFARI_IPHONE),
        ev("m2", 10, user_agent=CHROME_MAC),
        ev("m3", 20),  # m3: no user agent
    )
    row = row_of(state)
    assert (row["last_browser"], row["last_os"], row["last_device_type"]) == ("Chrome", "Mac OS X", "desktop")


def test_without_any_user_agent_the_device_is_unknown():
    row = row_of(run(ev("m1", 0)))
    assert (row["last_browser"], row["last_os"], row["last_device_type"]) == ("", "", "unknown")


# -- idempotence, merge, serialisation --------------------------------------------------------------------------


def test_a_redelivered_event_changes_nothing():
    once = run(sets("m1", 1, set={"a": 1}), sets("m2", 2, unset=["a"]), web("m3", 0, "https://x.example/"))
    assert run(sets("m1", 1, set={"a": 1}), state=once) == once


def test_merge_lets_into_win_conflicts_regardless_of_time():
    into = run(sets("i1", 100, set={"plan": "pro", "email": "ann@acme.com"}))
    absorbed = run(sets("a1", 500, set={"plan": "free", "utm": "ads"}))
    assert properties_of(merge(into, absorbed)) == {"plan": "pro", "email": "ann@acme.com", "utm": "ads"}


def test_merge_keeps_into_removals_and_set_once_values():
    into = run(sets("i1", 1, unset=["plan"], set_once={"source": "blog"}))
    absorbed = run(sets("a1", 9, set={"plan": "free", "source": "ads"}))
    assert properties_of(merge(into, absorbed)) == {"source": "blog"}


def test_merge_takes_the_earliest_touch_and_first_seen_and_the_latest_device_and_last_seen():
    into = run(web("i1", 50, "https://late.example/", user_agent=SAFARI_IPHONE), ev("i2", 70))
    absorbed = run(web("a1", 10, "https://early.example/", user_agent=CHROME_MAC), ev("a2", 60, user_agent=IPAD))
    row = row_of(merge(into, absorbed))
    assert row["initial_referring_domain"] == "early.example"
    assert (row["first_seen"], row["last_seen"]) == (T0 + timedelta(seconds=10), T0 + timedelta(seconds=70))
    assert row["last_device_type"] == "tablet"


def test_refolding_an_absorbed_event_after_a_merge_changes_nothing():
    late_set = sets("a1", 500, set={"plan": "free"})
    into = run(sets("i1", 100, set_once={"plan": "pro"}))
    merged = merge(into, run(late_set))
    assert fold(merged, late_set) == merged
    assert properties_of(merged) == {"plan": "pro"}


def test_state_json_round_trip_is_lossless_and_compact():
    state = run(
        ev("m1", 0, type="identify", traits={"email": "ann@acme.com", "tags": ["a", "b"], "address": {"city": "Oslo"}}),
        sets("m2", 1, set={"n": None, "x": 1.5}, set_once={"first": True}, unset=["gone"]),
        web("m3", 2, "https://www.google.com/", {"source": "google"}, user_agent=CHROME_MAC),
    )
    encoded = state.to_json()
    assert ProfileState.from_json(encoded) == state
    assert " " not in encoded.replace(CHROME_MAC, "")
    assert EMPTY.to_json() == "{}" and ProfileState.from_json("{}") == EMPTY


def test_person_row_flags_and_alias_come_from_the_identity():
    identity = PersonIdentity(person_id="p1", visitor_number=451, identified=True, is_contact=True, version=3)
    disabled = dataclasses.replace(run(ev("m1", 0)), status=Mark(0, "c1", "disabled"))
    row = row_of(disabled, identity, merged_into="p0", is_deleted=True)
    flags = ("visitor_number", "visitor_alias", "is_identified", "is_contact", "merged_into", "status", "is_deleted")
    assert [row[column] for column in flags] == [451, "Visitor 451", True, True, "p0", "disabled", 1]
    assert (row["event_count"], row["session_count"]) == (3, 1)
    anonymous = row_of(run(ev("m1", 0)))
    assert (anonymous["visitor_alias"], anonymous["is_identified"], anonymous["is_contact"]) == ("", False, False)


def test_person_row_refuses_an_unknown_status():
    with pytest.raises(ValueError):
        row_of(dataclasses.replace(EMPTY, status=Mark(0, "c1", "merged")))


# -- the persons table -----------------------------------------------------------------------------------------


def test_persons_ddl_matches_persons_spec_and_has_the_email_bloom_filter(clickhouse_client, database):
    described = clickhouse_client.query(f"DESCRIBE TABLE {database}.persons").result_rows
    assert tuple((name, kind) for name, kind, *_ in described) == PERSONS.columns
    indices = clickhouse_client.query(
        "SELECT expr, type FROM system.data_skipping_indices WHERE database = {db:String} AND table = 'persons'",
        parameters={"db": database},
    ).result_rows
    assert indices == [("email", "bloom_filter")]


def test_person_rows_round_trip_and_the_latest_version_wins(clickhouse_client, database):
    identity = PersonIdentity(person_id="p1", visitor_number=7, identified=True, is_contact=True, version=1)
    first = run(ev("m1", 0, type="identify", traits={"email": "ann@acme.com", "name": "Ann"}))
    latest = run(web("m2", 5, "https://www.google.com/", {"source": "google"}, user_agent=CHROME_MAC), state=first)
    rows = [
        person_row("p1", first, identity, event_count=1, session_count=1, version=1),
        person_row("p1", latest, identity, event_count=2, session_count=1, version=2),
    ]
    table = f"{database}.persons"
    clickhouse_client.insert(table, rows, column_names=PERSONS.column_names, column_type_names=PERSONS.column_types)
    stored = clickhouse_client.query(f"SELECT * FROM {table} FINAL").result_rows
    assert len(stored) == 1
    back = dict(zip(PERSONS.column_names, stored[0], strict=True))
    expected = dict(zip(PERSONS.column_names, rows[1], strict=True))
    for column in ("first_seen", "last_seen"):
        assert back.pop(column).replace(tzinfo=UTC) == expected.pop(column)
    assert back == expected
    assert ProfileState.from_json(back["_state"]) == latest
    assert orjson.loads(back["properties"]) == {"email": "ann@acme.com", "name": "Ann"}
    found = clickhouse_client.query(f"SELECT person_id FROM {table} FINAL WHERE email = 'ann@acme.com'").result_rows
    assert found == [("p1",)]


def located(message_id: str, seconds: float, **geo: str) -> EnrichedEvent:
    return ev(message_id, seconds, context={"geo": geo})


def test_initial_and_last_location_come_whole_from_the_earliest_and_latest_located_event():
    state = both_orders(
        located("a", 10, country="DE", region="Berlin", city="Berlin"),
        ev("b", 5),  # no location: says nothing
        located("c", 30, country="FR", city="Paris"),  # no region: the last location has none either
        located("d", 20, country="US", region="California", city="Mountain View"),
        ev("e", 40, context={"geo": "Paris"}),  # not an object: ignored
    )
    row = row_of(state)
    assert (row["initial_country"], row["initial_region"], row["initial_city"]) == ("DE", "Berlin", "Berlin")
    assert (row["last_country"], row["last_region"], row["last_city"]) == ("FR", "", "Paris")
    assert ProfileState.from_json(state.to_json()) == state


def test_a_person_without_located_events_has_no_location():
    row = row_of(run(ev("a", 1), ev("b", 2, context={"geo": {"country": "", "city": 3}})))
    assert [row[f"{when}_{key}"] for when in ("initial", "last") for key in ("country", "region", "city")] == [""] * 6


def test_merge_keeps_the_earliest_initial_and_the_latest_last_location():
    into = run(located("a", 10, country="DE"))
    absorbed = run(located("b", 5, country="FR"), located("c", 50, country="IT"))
    row = row_of(merge(into, absorbed))
    assert (row["initial_country"], row["last_country"]) == ("FR", "IT")
