"""The people list's query, cursors and the zero-filled daily series. Pure: no I/O.

`GET /api/v1/users` filters by a search term, status, tag, kind, lifecycle stage, list and any property, sorts by one column and
pages with a keyset cursor: (sort value, person id) of the last row, so a page never repeats or skips a
person while others are added. The SQL is assembled from fixed fragments; every value is a server-side
parameter.

A page is read in two steps, since FINAL over every person costs a whole merge (hundreds of milliseconds at
1,000,000 persons with updates not yet merged): candidates from the stored rows without FINAL, then FINAL on
those persons only. When the candidates do not settle the page, more are read, then FINAL over everyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import orjson

from api.errors import ApiError, FieldError
from api.keyset import Keyset

# column → its ClickHouse type (the cursor's parameter type)
SORTS = {
    "last_seen": "DateTime64(3, 'UTC')",
    "first_seen": "DateTime64(3, 'UTC')",
    "email": "String",
    "name": "String",
    "event_count": "UInt64",
    "session_count": "UInt32",
    "visitor_number": "UInt64",
}
Kind = Literal["identified", "anonymous", "contact"]
KINDS = {"identified": "is_identified", "anonymous": "NOT is_identified", "contact": "is_contact"}
MAX_LIMIT = 1000
NO_STAGE = "none"  # stage=none: users no stage was ever set for
MAX_PROPERTY_FILTERS = 20
CANDIDATES_PER_ROW = 4
DEEPER = 8  # each further read of candidates asks this many times more
MAX_CANDIDATES = 20_000  # beyond it, one FINAL over every person is cheaper than the id list


@dataclass(frozen=True)
class ListQuery:
    q: str | None = None
    status: str | None = None
    tag: str | None = None
    kind: Kind | None = None
    stage: str | None = None
    list: str | None = None
    segment: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    sort: str = "-last_seen"
    limit: int = 50
    cursor: str | None = None

    @property
    def column(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def check(self) -> ListQuery:
        errors = []
        if self.column not in SORTS:
            errors.append(FieldError("sort", "one_of", f"sort by one of {', '.join(SORTS)} (prefix '-' for descending)"))
        if not 1 <= self.limit <= MAX_LIMIT:
            errors.append(FieldError("limit", "range", f"limit is 1 to {MAX_LIMIT}"))
        if len(self.properties) > MAX_PROPERTY_FILTERS:
            errors.append(FieldError("properties", "max_filters", f"at most {MAX_PROPERTY_FILTERS} property filters"))
        if errors:
            raise ApiError(422, errors)
        return self

    def conditions(self) -> tuple[str, dict[str, Any]]:
        """The filters, search term and cursor as one SQL condition, with their parameters."""
        conditions: list[str] = ["1"]
        parameters: dict[str, Any] = {}
        if self.q:
            parameters["q"], parameters["q_lower"] = self.q, self.q.lower()
            conditions.append(
                "(startsWith(lower(email), {q_lower:String}) OR positionCaseInsensitiveUTF8(name, {q:String}) > 0 "
                "OR startsWith(phone, {q:String}) OR person_id = {q:String} OR person_id IN "
                "(SELECT argMax(person_id, version) FROM {db}.person_distinct_ids WHERE startsWith(distinct_id, {q:String}) GROUP BY distinct_id))"
            )
        if self.status:
            conditions.append("status = {status:String}")
            parameters["status"] = self.status
        if self.tag:
            conditions.append("has(tags, {tag:String})")
            parameters["tag"] = self.tag
        if self.kind:
            conditions.append(KINDS[self.kind])
        if self.stage is not None:
            conditions.append("stage = {stage:String}")
            parameters["stage"] = "" if self.stage == NO_STAGE else self.stage
        if self.list:
            conditions.append("has(lists, {list:String})")
            parameters["list"] = self.list
        if self.segment:
            conditions.append(
                "person_id IN (SELECT person_id FROM {db}.segment_members FINAL WHERE segment_id = {segment:String} AND exited_at IS NULL)"
            )
            parameters["segment"] = self.segment
        for index, (name, value) in enumerate(sorted(self.properties.items())):
            # A string matches its JSON-quoted form; a number or boolean matches its raw JSON.
            conditions.append(f"JSONExtractRaw(properties, {{pk{index}:String}}) IN ({{pv{index}:String}}, {{pj{index}:String}})")
            parameters[f"pk{index}"], parameters[f"pv{index}"] = name, value
            parameters[f"pj{index}"] = orjson.dumps(value).decode()
        if self.cursor:
            conditions.append(self.keyset().after(self.cursor, parameters))
        return " AND ".join(conditions), parameters

    def sql(self, columns: str) -> tuple[str, dict[str, Any]]:
        """The query for one page (and one row more, to know whether another page follows), merging every person
        with FINAL: exact whatever the stored versions, and the fallback when the candidates (below) do not settle."""
        condition, parameters = self.conditions()
        sql = f"SELECT {columns} FROM {{db}}.persons FINAL WHERE {condition} ORDER BY {self.keyset().order_by()} LIMIT {{limit:UInt32}}"
        return sql, {**parameters, "limit": self.limit + 1}

    def candidates_sql(self, depth: int) -> tuple[str, dict[str, Any]]:
        """The first `depth` stored rows that match, of any version, in page order: a plain scan, no FINAL.

        A live person belongs on the page only if its latest row matches; that row is one of the stored rows,
        so every person whose latest row comes before the last candidate in page order is among the candidates.
        """
        condition, parameters = self.conditions()
        keyset = self.keyset()
        sql = (
            f"SELECT person_id, {keyset.column} FROM {{db}}.persons WHERE is_deleted = 0 AND {condition} "
            f"ORDER BY {keyset.order_by()} LIMIT {{depth:UInt32}}"
        )
        return sql, {**parameters, "depth": depth}

    def page_from_candidates_sql(self, columns: str, candidates: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
        """The page among the candidates' latest rows, up to the last candidate: FINAL over those persons only
        (PREWHERE on the sorting key reads just their granules' rows)."""
        condition, parameters = self.conditions()
        keyset = self.keyset()
        last = candidates[-1]
        through = keyset.through(last[keyset.column], last["person_id"], parameters)
        sql = (
            f"SELECT {columns} FROM {{db}}.persons FINAL PREWHERE person_id IN {{candidates:Array(String)}} "
            f"WHERE {condition} AND {through} ORDER BY {keyset.order_by()} LIMIT {{limit:UInt32}}"
        )
        return sql, {**parameters, "candidates": [row["person_id"] for row in candidates], "limit": self.limit + 1}

    def first_depth(self) -> int:
        """How many candidates to read first: a few pages' worth, since a person updated since it matched
        leaves older rows behind that no longer count."""
        return CANDIDATES_PER_ROW * (self.limit + 1)

    def settled(self, depth: int, candidates: int, rows: int) -> bool:
        """Whether the page read from `candidates` of `depth` asked for is the page: full (one row more than
        the limit), or the candidates were every stored row that matches."""
        return rows > self.limit or candidates < depth

    def keyset(self) -> Keyset:
        return Keyset(self.column, SORTS[self.column], "person_id", self.descending)

    def cursor_position(self) -> tuple[Any, str]:
        return self.keyset().position(self.cursor or "")

    def next_cursor(self, last_row: dict[str, Any]) -> str:
        return self.keyset().next_cursor(last_row)


def daily_series(counts: dict[str, int], today: date, days: int) -> list[dict[str, Any]]:
    """One entry per day of the last `days` days up to `today`, oldest first; days without events count 0."""
    first = today.toordinal() - days + 1
    return [{"day": (day := date.fromordinal(first + i).isoformat()), "count": counts.get(day, 0)} for i in range(days)]
