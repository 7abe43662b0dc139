"""Reading users from the projections: one profile, a searched and filtered list, timelines.

Every query is a fixed text with server-side parameters; the list's WHERE clause is assembled from fixed
fragments (api/user_query.py) whose values are parameters too.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from api.errors import not_found
from api.reads import Reader, live_persons_where
from api.user_model import Ref
from api.user_query import DEEPER, MAX_CANDIDATES, ListQuery, daily_series

PROFILE_COLUMNS = (
    "person_id, visitor_number, visitor_alias, is_identified, is_contact, email, name, phone, email_domain, "
    "is_free_email, company_domain, properties, tags, status, first_seen, last_seen, initial_referrer, "
    "initial_referring_domain, initial_utm_source, initial_utm_medium, initial_utm_campaign, initial_utm_term, "
    "initial_utm_content, last_browser, last_os, last_device_type, session_count, event_count, stage, lists"
)

# The distinct ids that belong to a person now (latest mapping, not deleted).
DISTINCT_IDS_OF = (
    "SELECT distinct_id FROM {db}.person_distinct_ids "
    "WHERE distinct_id IN (SELECT distinct_id FROM {db}.person_distinct_ids WHERE person_id = {person:String}) "
    "GROUP BY distinct_id HAVING argMax(person_id, version) = {person:String} AND argMax(is_deleted, version) = 0"
)


# The person and every person merged into it (person_overrides is flattened: a chain ends at the live one).
PERSON_AND_MERGED = (
    "SELECT {person:String} UNION ALL SELECT from_person FROM {db}.person_overrides FINAL WHERE into_person = {person:String}"
)


def profile_json(row: dict[str, Any], distinct_ids: list[str] | None = None) -> dict[str, Any]:
    """A persons row as the API shows it."""
    profile = dict(row)
    profile["properties"] = orjson.loads(row["properties"] or "{}")
    profile["user_id"] = profile["properties"].get("user_id")
    profile["stage"] = row.get("stage") or None  # none set yet
    if distinct_ids is not None:
        profile["distinct_ids"] = sorted(distinct_ids)
    return profile


class People:
    def __init__(self, reader: Reader, max_candidates: int = MAX_CANDIDATES):
        self.reader = reader
        self.max_candidates = max_candidates

    async def person_id_of(self, ref: Ref) -> str | None:
        """The live person a ref names, or None."""
        if ref.kind == "person_id":
            rows = await self.reader.rows("SELECT person_id FROM {db}.persons FINAL WHERE person_id = {p:String} LIMIT 1", {"p": ref.value})
        elif ref.kind == "distinct_id":
            rows = await self.reader.rows(
                "SELECT argMax(person_id, version) AS live FROM {db}.person_distinct_ids WHERE distinct_id = {d:String} "
                "GROUP BY distinct_id HAVING argMax(is_deleted, version) = 0 AND live IN (SELECT person_id FROM {db}.persons FINAL "
                "WHERE person_id IN (SELECT argMax(person_id, version) FROM {db}.person_distinct_ids WHERE distinct_id = {d:String}))",
                {"d": ref.value},
            )
            return rows[0]["live"] if rows else None
        else:
            rows = await self.reader.rows(
                "SELECT person_id FROM " + live_persons_where("lower(email) = {e:String}") + " "
                "ORDER BY is_identified DESC, last_seen DESC, person_id LIMIT 1",
                {"e": ref.value},
            )
        return rows[0]["person_id"] if rows else None

    async def require(self, ref: Ref, raw: str) -> str:
        person_id = await self.person_id_of(ref)
        if person_id is None:
            raise not_found(raw)
        return person_id

    async def profile(self, person_id: str) -> dict[str, Any] | None:
        rows = await self.reader.rows(
            f"SELECT {PROFILE_COLUMNS} FROM {{db}}.persons FINAL WHERE person_id = {{p:String}}", {"p": person_id}
        )
        if not rows:
            return None
        return profile_json(rows[0], await self.distinct_ids(person_id))

    async def distinct_ids(self, person_id: str) -> list[str]:
        return [r["distinct_id"] for r in await self.reader.rows(DISTINCT_IDS_OF, {"person": person_id})]

    async def owner_of(self, identifier: str, value: str) -> str | None:
        """The person that already has this identifier (409), if any."""
        if identifier == "email":
            ref = Ref("email", value)
        elif identifier == "user_id":
            ref = Ref("distinct_id", value)
        else:
            rows = await self.reader.rows(
                "SELECT person_id FROM " + live_persons_where("JSONExtractString(properties, {k:String}) = {v:String}") + " LIMIT 1",
                {"k": identifier, "v": value},
            )
            return rows[0]["person_id"] if rows else None
        return await self.person_id_of(ref)

    async def search(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        rows = await self._page_rows(query)
        page = rows[: query.limit]
        cursor = query.next_cursor(page[-1]) if len(rows) > query.limit else None
        return [profile_json(row) for row in page], cursor

    async def _page_rows(self, query: ListQuery) -> list[dict[str, Any]]:
        """One page (and a row more), read from candidates first (api/user_query.py says why)."""
        depth = query.first_depth()
        while depth <= self.max_candidates:
            candidates = await self.reader.rows(*query.candidates_sql(depth))
            if not candidates:
                return []
            rows = await self.reader.rows(*query.page_from_candidates_sql(PROFILE_COLUMNS, candidates))
            if query.settled(depth, len(candidates), len(rows)):
                return rows
            depth *= DEEPER
        return await self.reader.rows(*query.sql(PROFILE_COLUMNS))

    async def events(self, person_id: str, limit: int, event: str | None, before: tuple[str, str] | None) -> list[dict[str, Any]]:
        # Its events, and the `$` rows of its profile changes: keyed by the person id itself, or by a person
        # merged into it (the rows stay under the id they were written with; person_overrides says where it went).
        conditions = [f"(distinct_id IN ({DISTINCT_IDS_OF}) OR (type = 'profile_change' AND distinct_id IN ({PERSON_AND_MERGED})))"]
        parameters: dict[str, Any] = {"person": person_id, "limit": limit + 1}
        if event is not None:
            conditions.append("event = {event:String}")
            parameters["event"] = event
        if before is not None:
            conditions.append("(timestamp, message_id) < ({ts:DateTime64(3, 'UTC')}, {mid:String})")
            parameters["ts"], parameters["mid"] = before
        rows = await self.reader.rows(
            "SELECT message_id, timestamp, received_at, type, event, distinct_id, session_id, properties, flags "
            "FROM {db}.events FINAL WHERE " + " AND ".join(conditions) + " ORDER BY timestamp DESC, message_id DESC LIMIT {limit:UInt32}",
            parameters,
        )
        for row in rows:
            row["properties"] = orjson.loads(row["properties"] or "{}")
        return rows

    async def sessions(self, person_id: str, limit: int) -> list[dict[str, Any]]:
        return await self.reader.rows(
            "SELECT session_id, status, start, end, duration_seconds, event_count, pageview_count, bounced, entry_url, exit_url, "
            "referrer, utm_source, utm_medium, utm_campaign, browser, os, device_type FROM {db}.sessions FINAL "
            f"WHERE device_key IN ({DISTINCT_IDS_OF}) ORDER BY start DESC LIMIT {{limit:UInt32}}",
            {"person": person_id, "limit": limit},
        )

    async def merges(self, person_id: str) -> list[dict[str, Any]]:
        """The persons merged into this one (flattened: a chain of merges ends here), newest first."""
        return await self.reader.rows(
            "SELECT from_person, merged_at FROM {db}.person_overrides FINAL WHERE into_person = {person:String} "
            "ORDER BY merged_at DESC, from_person LIMIT 1000",
            {"person": person_id},
        )

    async def stage_history(self, person_id: str) -> list[dict[str, Any]]:
        """Every stage the person entered, oldest first: when, from which stage, by what (rule, API, import) and why."""
        return await self.reader.rows(
            "SELECT stage, from_stage, entered_at, by, reason, command_id FROM {db}.stage_history FINAL "
            "WHERE person_id = {person:String} AND effective ORDER BY entered_at, command_id LIMIT 10000",
            {"person": person_id},
        )

    async def list_memberships(self, person_id: str) -> list[dict[str, Any]]:
        """Every membership period of the person, current ones (removed_at null) first, newest first."""
        return await self.reader.rows(
            "SELECT list_id, added_at, added_by, removed_at, removed_by FROM {db}.list_members FINAL "
            "WHERE person_id = {person:String} ORDER BY isNull(removed_at) DESC, added_at DESC LIMIT 10000",
            {"person": person_id},
        )

    async def event_counts(self, person_id: str, days: int, event: str | None, today: date) -> list[dict[str, Any]]:
        parameters: dict[str, Any] = {"person": person_id, "since": date.fromordinal(today.toordinal() - days + 1).isoformat()}
        event_filter = ""
        if event is not None:
            event_filter = " AND event = {event:String}"
            parameters["event"] = event
        # event_counts_daily (the view) would resolve every distinct id of every person before filtering by this
        # one; its own distinct ids first reads only theirs. The same counts: per event and type, then per day.
        rows = await self.reader.rows(
            "SELECT toString(day) AS date, sum(count) AS events FROM (SELECT day, uniqExactMerge(events) AS count "
            f"FROM {{db}}.event_counts_daily_by_distinct_id WHERE distinct_id IN ({DISTINCT_IDS_OF}) AND day >= {{since:Date}}"
            + event_filter
            + " GROUP BY day, event, type) GROUP BY day",
            parameters,
        )
        return daily_series({r["date"]: int(r["events"]) for r in rows}, today, days)
