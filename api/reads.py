"""Where the API reads from: ClickHouse itself, or the projector's read API when the engine is embedded.

The embedded engine (chdb) can be opened by one process only, and in `footfall run` that is the projector;
so `footfall api` sends its queries there (POST /sql with the admin key). With a ClickHouse server it
connects directly. Either way a query is a fixed SQL text with server-side parameters (`{name:Type}`):
nothing a client sends is ever spliced into SQL. `{db}` is the configured database (a plain identifier).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import httpx
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.concurrency import run_in_threadpool

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def live_persons_where(condition: str) -> str:
    """`{db}.persons FINAL WHERE <condition>`, without FINAL over every person: the condition is tried on the
    stored rows first (a plain scan), then FINAL reads only the persons that ever matched, by primary key,
    and the condition holds on their latest version. Over 1,000,000 persons an email or property lookup
    takes tens of milliseconds this way, instead of a whole FINAL merge (seconds)."""
    return f"{{db}}.persons FINAL WHERE person_id IN (SELECT person_id FROM {{db}}.persons WHERE {condition}) AND {condition}"


class ReadUnavailable(Exception):
    """The read side did not answer (the projector is starting, ClickHouse is away): 503, retry."""


class Reader(Protocol):
    async def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


def _with_database(sql: str, database: str) -> str:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} is not a plain identifier")
    return sql.replace("{db}", database)


def _as_json_rows(columns: list[str], rows: list[list]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


class ClickHouseReader:
    """Reads through a clickhouse-connect client (a server, or chdb when this process owns it: tests)."""

    def __init__(self, client: Client, database: str):
        self.client = client
        self.database = database

    async def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await run_in_threadpool(self._run, sql, parameters)

    def _run(self, sql: str, parameters: dict[str, Any] | None) -> list[dict[str, Any]]:
        try:
            result = self.client.query(_with_database(sql, self.database), parameters=parameters or {}, settings={"readonly": 2})
        except ClickHouseError as exc:
            raise ReadUnavailable(str(exc)) from exc
        # The same JSON values the read API would send, so both readers answer alike.
        return orjson.loads(
            orjson.dumps(_as_json_rows(list(result.column_names), [list(r) for r in result.result_rows]), default=_json_default)
        )


class ReadApiReader:
    """Reads through the projector's read API (`/sql`, admin key): the embedded engine's only door."""

    def __init__(self, url: str, admin_key: str, database: str, timeout_s: float = 30.0):
        self.url = url.rstrip("/") + "/sql"
        self.database = database
        self._headers = {"Authorization": f"Bearer {admin_key}"}
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        body = orjson.dumps({"query": _with_database(sql, self.database), "parameters": parameters or {}}, default=_json_default)
        try:
            response = await self._client.post(self.url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ReadUnavailable(f"the projector's read API did not answer: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ReadUnavailable(f"the projector's read API answered {response.status_code}")
        result = response.json()
        return _as_json_rows(result["columns"], result["rows"])

    async def close(self) -> None:
        await self._client.aclose()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(type(value).__name__)
