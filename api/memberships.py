"""Who is in a list or a segment, now or at a past time: one page of membership periods (a period opens when a
person enters and closes when they leave), joined with each person's name, paged by person id. Table and
column names are fixed by the callers; every value is a server-side parameter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.errors import ApiError
from api.keyset import clickhouse_time, decode_cursor, encode_cursor


async def members_page(
    reader: Any,
    *,
    table: str,
    owner_column: str,
    owner: str,
    period_columns: str,
    opened: str,
    closed: str,
    at: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    parameters: dict[str, Any] = {"owner": owner, "limit": limit + 1, "after": ""}
    if at is None:
        when = f"m.{closed} IS NULL"
    else:
        when = f"m.{opened} <= {{at:DateTime64(3, 'UTC')}} AND (m.{closed} IS NULL OR m.{closed} > {{at:DateTime64(3, 'UTC')}})"
        parameters["at"] = clickhouse_time((at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat())
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, str):
            raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out")
        parameters["after"] = after
    rows = await reader.rows(
        f"SELECT m.person_id AS person_id, {period_columns}, p.email AS email, p.name AS name, p.stage AS stage "
        f"FROM {{db}}.{table} AS m FINAL "
        "INNER JOIN (SELECT person_id, email, name, stage FROM {db}.persons FINAL) AS p ON p.person_id = m.person_id "
        f"WHERE m.{owner_column} = {{owner:String}} AND {when} "
        "AND m.person_id > {after:String} ORDER BY m.person_id LIMIT {limit:UInt32}",
        parameters,
    )
    page = rows[:limit]
    return page, encode_cursor([page[-1]["person_id"]]) if len(rows) > limit else None
