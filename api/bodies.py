"""Request bodies read strictly, before FastAPI's own parsing: bounded in size, and JSON as orjson reads it.

Python's json module accepts what must not pass into commands kept forever: NaN and Infinity, lone
surrogates (which no encoder can write back out: a 5xx later), and nesting deep enough to exhaust the
stack. orjson refuses all three, so a body it cannot read is a 422 naming the rule, and one over
MAX_BODY_BYTES is a 413, before any of it is held whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.errors import ApiError, FieldError

MAX_BODY_BYTES = 1 << 20


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError.of(413, "body", "max_size", f"a request body is at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError.of(413, "body", "max_size", f"a request body is at most {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what request.body() answers from now on (Starlette caches it here)
    return body


class StrictJSONRoute(APIRoute):
    """Every route of the API: its body is size-bounded and must be JSON that orjson reads."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                body = await read_bounded(request)
                if body:
                    try:
                        orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        raise ApiError(422, [FieldError("body", "json_invalid", f"not JSON footfall accepts: {exc}")]) from None
            return await handler(request)

        return strict
