"""Keyset pagination for every list the API pages through. Pure: no I/O.

A page is ordered by one sortable column, ties broken by the row's id; its cursor is the (sort value, id) of
the last row, so a page never repeats or skips a row while others are added. A cursor is opaque to clients
and checked on the way back in: one from another sort, or forged, is a 422 naming `cursor`, never a
query ClickHouse would refuse.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from api.errors import ApiError


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


def _fits(kind: str, value: Any) -> bool:
    """Whether a cursor's sort value is one a parameter of this ClickHouse type accepts."""
    if kind.startswith("UInt"):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** int(kind[4:])
    if kind.startswith("DateTime64"):
        return isinstance(value, str) and _parses_as_time(value)
    return isinstance(value, str)


@dataclass(frozen=True)
class Keyset:
    """One list's order: `column` (of ClickHouse type `kind`), then `id_column`, ascending or descending."""

    column: str
    kind: str
    id_column: str
    descending: bool = False

    def order_by(self) -> str:
        order = "DESC" if self.descending else "ASC"
        return f"{self.column} {order}, {self.id_column} {order}"

    def after(self, cursor: str, parameters: dict[str, Any]) -> str:
        """The condition for the rows after `cursor`; its values are added to `parameters`."""
        parameters["after"], parameters["after_id"] = self.position(cursor)
        comparison = "<" if self.descending else ">"
        return f"({self.column}, {self.id_column}) {comparison} ({{after:{self.kind}}}, {{after_id:String}})"

    def through(self, value: Any, row_id: str, parameters: dict[str, Any]) -> str:
        """The condition for the rows up to and including (`value`, `row_id`) in this order (a value as the
        readers return it); its values are added to `parameters`."""
        if self.kind.startswith("DateTime64"):
            value = clickhouse_time(value)
        parameters["through"], parameters["through_id"] = value, row_id
        comparison = ">=" if self.descending else "<="
        return f"({self.column}, {self.id_column}) {comparison} ({{through:{self.kind}}}, {{through_id:String}})"

    def position(self, cursor: str) -> tuple[Any, str]:
        """The (sort value, id) a cursor continues after; a cursor of another sort, or forged, is refused."""
        column, value, row_id = decode_cursor(cursor, 3)
        if column != self.column or not isinstance(row_id, str) or not _fits(self.kind, value):
            raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out (for this sort)")
        return value, row_id

    def next_cursor(self, last_row: dict[str, Any]) -> str:
        value = last_row[self.column]
        if self.kind.startswith("DateTime64"):
            value = clickhouse_time(value)
        return encode_cursor([self.column, value, last_row[self.id_column]])
