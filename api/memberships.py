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
    parameters: dict[str, Any] = {"owner": owner, "after": ""}
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
    # One page of periods first, then FINAL over those persons only: a person deleted since joining drops
    # out, so a page short of `limit` reads deeper until it is full or the periods run out.
    depth = limit + 1
    while True:
        periods = (
            f"SELECT * FROM {{db}}.{table} AS m FINAL WHERE m.{owner_column} = {{owner:String}} AND {when} "
            "AND m.person_id > {after:String} ORDER BY m.person_id LIMIT {depth:UInt32}"
        )
        found = await reader.rows(
            f"SELECT m.person_id AS person_id, {period_columns}, p.person_id != '' AS live, p.email AS email, p.name AS name, "
            f"p.stage AS stage FROM ({periods}) AS m LEFT JOIN (SELECT person_id, email, name, stage FROM {{db}}.persons FINAL "
            f"PREWHERE person_id IN (SELECT person_id FROM ({periods}))) AS p ON p.person_id = m.person_id ORDER BY m.person_id",
            {**parameters, "depth": depth},
        )
        rows = [{k: v for k, v in row.items() if k != "live"} for row in found if row["live"]]
        if len(rows) > limit or len(found) < depth:
            break
        depth *= 4
    page = rows[:limit]
    return page, encode_cursor([page[-1]["person_id"]]) if len(rows) > limit else None
