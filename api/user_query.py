"""The people list's query, cursors and the zero-filled daily series. Pure: no I/O.

`GET /api/v1/users` filters by a search term, status, tag, kind, lifecycle stage, list and any property, sorts by one column and
pages with a keyset cursor: (sort value, person id) of the last row, so a page never repeats or skips a
person while others are added. The SQL is assembled from fixed fragments; every value is a server-side
parameter.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ListQuery:
    q: str | None = None
    status: str | None = None
    tag: str | None = None
    kind: Kind | None = None
    stage: str | None = None
    list: str | None = None
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

    def sql(self, columns: str) -> tuple[str, dict[str, Any]]:
        """The query for one page (and one row more, to know whether another page follows)."""
        conditions: list[str] = ["1"]
        parameters: dict[str, Any] = {"limit": self.limit + 1}
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
        for index, (name, value) in enumerate(sorted(self.properties.items())):
            # A string matches its JSON-quoted form; a number or boolean matches its raw JSON.
            conditions.append(f"JSONExtractRaw(properties, {{pk{index}:String}}) IN ({{pv{index}:String}}, {{pj{index}:String}})")
            parameters[f"pk{index}"], parameters[f"pv{index}"] = name, value
            parameters[f"pj{index}"] = orjson.dumps(value).decode()
        keyset = self.keyset()
        if self.cursor:
            conditions.append(keyset.after(self.cursor, parameters))
        sql = (
            f"SELECT {columns} FROM {{db}}.persons FINAL WHERE {' AND '.join(conditions)} "
            f"ORDER BY {keyset.order_by()} LIMIT {{limit:UInt32}}"
        )
        return sql, parameters

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
