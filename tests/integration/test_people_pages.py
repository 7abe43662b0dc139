"""The people list read from candidates (api/people.py, api/user_query.py) against ClickHouse (chdb): for any stored
versions of any persons (updated, re-sorted, untagged, deleted, not yet merged), every page of every sort and
filter is the page FINAL over every person gives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.memberships import members_page
from api.people import PROFILE_COLUMNS, People
from api.reads import ClickHouseReader
from api.user_query import ListQuery

EPOCH = datetime(2026, 6, 1, tzinfo=UTC)
COLUMNS = ["person_id", "visitor_number", "email", "status", "tags", "last_seen", "event_count", "version", "is_deleted"]

versions = st.lists(
    st.tuples(
        st.integers(0, 5),  # person
        st.integers(1, 5),  # version
        st.integers(0, 20),  # last seen, minutes after EPOCH: ties across persons too
        st.sampled_from(["", "a@x.io", "b@x.io", "c@y.io"]),
        st.sampled_from(["active", "disabled"]),
        st.booleans(),  # tagged
        st.integers(0, 3),  # event count
        st.booleans(),  # deleted
    ),
    max_size=60,
)
queries = st.builds(
    ListQuery,
    status=st.sampled_from([None, "active"]),
    tag=st.sampled_from([None, "vip"]),
    sort=st.sampled_from(["-last_seen", "last_seen", "email", "-event_count", "visitor_number"]),
    limit=st.integers(1, 3),
)


def store(client, database: str, batches: list[list[tuple]]) -> None:
    client.command(f"TRUNCATE TABLE {database}.persons")
    for batch in batches:  # one insert each, every version kept: parts and rows FINAL has to merge
        rows = [
            [
                f"p{person}",
                person + 1,
                email,
                status,
                ["vip"] if tagged else [],
                EPOCH + timedelta(minutes=minute),
                events,
                version,
                int(deleted),
            ]
            for person, version, minute, email, status, tagged, events, deleted in batch
        ]
        if rows:
            client.insert(f"{database}.persons", rows, column_names=COLUMNS, settings={"optimize_on_insert": 0})


def every_page(read_page, query: ListQuery) -> list[str]:
    """Person ids of every page in turn, following the cursors."""
    found: list[str] = []
    while True:
        rows, cursor = read_page(query)
        found.extend(row["person_id"] for row in rows)
        if cursor is None:
            return found
        assert len(found) <= 8, "a cursor that never ends"
        query = ListQuery(**{**query.__dict__, "cursor": cursor})


@pytest.mark.parametrize("max_candidates", [8, 20_000], ids=["falls-back-to-final", "default"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stored=st.lists(versions, min_size=1, max_size=3), query=queries)
def test_every_page_read_from_candidates_is_the_page_final_over_everyone_gives(clickhouse_client, database, max_candidates, stored, query):
    store(clickhouse_client, database, stored)
    reader = ClickHouseReader(clickhouse_client, database)
    people = People(reader, max_candidates=max_candidates)

    def from_candidates(page: ListQuery):
        return asyncio.run(people.search(page))

    def final_over_everyone(page: ListQuery):
        rows = asyncio.run(reader.rows(*page.sql(PROFILE_COLUMNS)))
        return rows[: page.limit], page.next_cursor(rows[page.limit - 1]) if len(rows) > page.limit else None

    assert every_page(from_candidates, query) == every_page(final_over_everyone, query)


def test_a_person_updated_past_the_first_candidates_is_found_by_reading_deeper(clickhouse_client, database):
    """Forty stale rows of one person, newer than everyone else's, fill the first read of candidates; the page
    still lists the others."""
    stale = [(0, version, 100 + version, "", "active", False, 0, False) for version in range(1, 41)]
    moved = [(0, 41, 0, "", "active", False, 0, False)]
    others = [(person, 1, 10 + person, "", "active", False, 0, False) for person in range(1, 6)]
    store(clickhouse_client, database, [stale + others, moved])
    people = People(ClickHouseReader(clickhouse_client, database))
    rows, cursor = asyncio.run(people.search(ListQuery(sort="-last_seen", limit=5)))
    assert [row["person_id"] for row in rows] == ["p5", "p4", "p3", "p2", "p1"]
    assert cursor is not None  # p0 follows, on the next page


def test_persons_that_moved_past_the_last_candidate_wait_for_their_turn(clickhouse_client, database):
    """p0 and p1 were seen last long ago now, but their old rows are the newest stored: they are candidates,
    yet p2 (never among the candidates) comes first."""
    old = [(person, version, 100 + 4 * person + version, "", "active", False, 0, False) for person in (0, 1) for version in range(1, 5)]
    now = [(0, 9, 0, "", "active", False, 0, False), (1, 9, 1, "", "active", False, 0, False), (2, 1, 50, "", "active", False, 0, False)]
    store(clickhouse_client, database, [old, now])
    people = People(ClickHouseReader(clickhouse_client, database))
    assert ListQuery(sort="-last_seen", limit=1).first_depth() == len(old)  # the first read is exactly their old rows
    pages = every_page(lambda page: asyncio.run(people.search(page)), ListQuery(sort="-last_seen", limit=1))
    assert pages == ["p2", "p1", "p0"]


mappings = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(1, 3), st.booleans()),  # distinct id, person, version, deleted
    max_size=12,
)
tracked = st.lists(
    st.tuples(
        st.integers(0, 9), st.integers(0, 5), st.integers(0, 9), st.sampled_from(["Clicked", "Bought"])
    ),  # message, distinct id, day, event
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mappings=mappings, tracked=tracked, event=st.sampled_from([None, "Clicked"]), days=st.integers(1, 12))
def test_a_persons_daily_counts_are_the_event_counts_daily_views(clickhouse_client, database, mappings, tracked, event, days):
    """Read through the person's own distinct ids, the counts are the view's (every person resolved), duplicates
    and remapped or deleted ids included."""
    for table in ("person_distinct_ids", "events", "event_counts_daily_by_distinct_id"):
        clickhouse_client.command(f"TRUNCATE TABLE {database}.{table}")
    if mappings:
        clickhouse_client.insert(
            f"{database}.person_distinct_ids",
            [[f"d{d}", f"p{p}", version, int(deleted)] for d, p, version, deleted in mappings],
            column_names=["distinct_id", "person_id", "version", "is_deleted"],
        )
    today = EPOCH.date()
    for message, distinct, day, name in tracked:  # one insert each: a re-sent message lands in another part
        moment = EPOCH - timedelta(days=day, minutes=message)
        clickhouse_client.insert(
            f"{database}.events",
            [[f"m{message}-{distinct}", moment, moment, "track", name, f"d{distinct}", "", "{}", "test"]],
            column_names=["message_id", "timestamp", "received_at", "type", "event", "distinct_id", "person_id", "properties", "source_id"],
        )
    people = People(ClickHouseReader(clickhouse_client, database))
    since = today - timedelta(days=days - 1)
    for person in ("p0", "p1", "p2"):
        viewed = clickhouse_client.query(
            f"SELECT toString(day), sum(count) FROM {database}.event_counts_daily WHERE person_id = {{p:String}} AND day >= {{s:Date}} "
            + ("AND event = {e:String} " if event else "")
            + "GROUP BY day",
            parameters={"p": person, "s": since, "e": event},
        ).result_rows
        served = asyncio.run(people.event_counts(person, days, event, today))
        assert {day["day"]: day["count"] for day in served if day["count"]} == {day: int(count) for day, count in viewed}


def test_a_lists_members_page_skips_deleted_persons_and_still_fills(clickhouse_client, database):
    """The first three members were deleted since they joined: the page reads past them, full, then the rest."""
    store(clickhouse_client, database, [[(person, 1, person, "", "active", False, 0, person < 3) for person in range(6)]])
    clickhouse_client.command(f"TRUNCATE TABLE {database}.list_members")
    clickhouse_client.insert(
        f"{database}.list_members",
        [["L", f"p{person}", f"c{person}", EPOCH, "test", 1] for person in range(6)] + [["L", "p9", "c9", EPOCH, "test", 1]],
        column_names=["list_id", "person_id", "added_command_id", "added_at", "added_by", "version"],
    )
    reader = ClickHouseReader(clickhouse_client, database)

    def page(cursor):
        return asyncio.run(
            members_page(
                reader,
                table="list_members",
                owner_column="list_id",
                owner="L",
                period_columns="m.added_by AS added_by",
                opened="added_at",
                closed="removed_at",
                at=None,
                limit=2,
                cursor=cursor,
            )
        )

    first, cursor = page(None)
    assert [(m["person_id"], m["added_by"]) for m in first] == [("p3", "test"), ("p4", "test")] and cursor
    rest, cursor = page(cursor)
    assert [m["person_id"] for m in rest] == ["p5"] and cursor is None  # p9 never was a person
