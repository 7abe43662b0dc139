"""The people list's query, cursors and the zero-filled daily series. Pure: no I/O.

`GET /api/v1/users` filters by a search term, status, tag, kind, lifecycle stage, list and any property, sorts by one column and
pages with a keyset cursor: (sort value, person id) of the last row, so a page never repeats or skips a
person while others are added. The SQL is assembled from fixed fragments; every value is a server-side
parameter.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import orjson

from api.errors import ApiError, FieldError

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


def clickhouse_time(value: str) -> str:
    """An ISO 8601 time (as the readers return DateTime64 values) in the form a DateTime64 parameter takes."""
    moment = datetime.fromisoformat(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _parses_as_time(value: str) -> bool:
    try:
        datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return False
    return True


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != length:
        raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out")
    return values


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
        order = "DESC" if self.descending else "ASC"
        if self.cursor:
            sort_value, person_id = self.cursor_position()
            comparison = "<" if self.descending else ">"
            conditions.append(f"({self.column}, person_id) {comparison} ({{after:{SORTS[self.column]}}}, {{after_person:String}})")
            parameters["after"], parameters["after_person"] = sort_value, person_id
        sql = (
            f"SELECT {columns} FROM {{db}}.persons FINAL WHERE {' AND '.join(conditions)} "
            f"ORDER BY {self.column} {order}, person_id {order} LIMIT {{limit:UInt32}}"
        )
        return sql, parameters

    def cursor_position(self) -> tuple[Any, str]:
        """The (sort value, person id) a cursor continues after; a cursor of another sort, or forged, is refused."""
        column, value, person_id = decode_cursor(self.cursor or "", 3)
        kind = SORTS.get(self.column, "")
        valid = column == self.column and isinstance(person_id, str)
        if kind.startswith("UInt"):
            valid = valid and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
        elif kind.startswith("DateTime64"):
            valid = valid and isinstance(value, str) and _parses_as_time(value)
        else:
            valid = valid and isinstance(value, str)
        if not valid:
            raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out (for this sort)")
        return value, person_id

    def next_cursor(self, last_row: dict[str, Any]) -> str:
        value = last_row[self.column]
        if SORTS[self.column].startswith("DateTime64"):
            value = clickhouse_time(value)
        return encode_cursor([self.column, value, last_row["person_id"]])


def daily_series(counts: dict[str, int], today: date, days: int) -> list[dict[str, Any]]:
    """One entry per day of the last `days` days up to `today`, oldest first; days without events count 0."""
    first = today.toordinal() - days + 1
    return [{"day": (day := date.fromordinal(first + i).isoformat()), "count": counts.get(day, 0)} for i in range(days)]
