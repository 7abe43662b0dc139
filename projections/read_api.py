"""The read side served by the process that owns ClickHouse: SQL for `footfall sql` and analysts' tools.

With the embedded engine only one process may open the data directory, so the projector serves reads
for everyone else. Every request needs the admin secret (never the public write key).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(type(value).__name__)


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def run_query(client: Client, sql: str, readonly: bool = True, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one query; `parameters` are bound server-side (`{name:Type}` in the SQL), never spliced in."""
    result = client.query(sql, parameters=parameters or {}, settings={"readonly": 2} if readonly else None)
    return {
        "columns": list(result.column_names),
        "types": [t.name for t in result.column_types],
        "rows": [list(row) for row in result.result_rows],
    }


def create_read_app(client: Client, admin_key: str, readiness: Callable[[], tuple[bool, dict[str, str]]] | None = None) -> Starlette:
    """The read API; with `readiness` (the projector's), GET /readyz says whether an event can move through it."""

    def authorized(request: Request) -> bool:
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(supplied.encode(), admin_key.encode())

    async def sql(request: Request) -> Response:
        if not authorized(request):
            return Response(dumps({"error": "admin key required (Authorization: Bearer ...)"}), 401, media_type="application/json")
        try:
            body = orjson.loads(await request.body())
            query, parameters = body["query"], body.get("parameters") or {}
            if not isinstance(query, str) or not isinstance(parameters, dict):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return Response(
                dumps({"error": 'body must be {"query": "SELECT ...", "parameters": {...}}'}), 400, media_type="application/json"
            )
        try:
            result = await run_in_threadpool(run_query, client, query, True, parameters)
        except ClickHouseError as exc:
            return Response(dumps({"error": str(exc)}), 400, media_type="application/json")
        return Response(dumps(result), media_type="application/json")

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"alive"}', media_type="application/json")

    async def readyz(_request: Request) -> Response:
        ready, checks = readiness() if readiness else (True, {})
        return Response(dumps({"ready": ready, **checks}), 200 if ready else 503, media_type="application/json")

    async def prometheus(_request: Request) -> Response:
        """The projector's metrics (projections/metrics.py); like the collector's, no key needed."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes = [Route("/sql", sql, methods=["POST"]), Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)]
    return Starlette(routes=routes)
