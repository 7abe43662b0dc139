"""Reading a request body safely: bounded size, bounded gzip, and the content types SDKs use.

The body is read as JSON whatever its declared content type, as RudderStack's gateway does: several server
SDKs send JSON (often gzipped) declared as application/x-www-form-urlencoded, or with no content type.
Only a body that is not JSON is refused for its type: 415 when it declared a type other than JSON's (or
sendBeacon's text/plain), 400 "invalid JSON" when it claimed to be JSON.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from starlette.requests import Request

from schemas.tracking import MAX_BATCH_BYTES

JSON_CONTENT_TYPES = ("application/json", "text/plain", "")
# The wire body may be a little larger than the limit on its JSON (whitespace, gzip framing).
MAX_WIRE_BYTES = MAX_BATCH_BYTES + 64 * 1024
# Past the body timeout's first seconds, a body must keep arriving at least this fast (as Apache's
# mod_reqtimeout MinRate): a slow phone is served, a client that trickles a byte a second is not.
BODY_MIN_BYTES_PER_S = 1024


class BodyError(Exception):
    """A request body that cannot be read; carries the HTTP status and a reason naming the problem."""

    def __init__(self, status: int, field: str, reason: str, raw: bytes = b"", *, rule: str):
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason
        self.rule = rule  # machine-readable, for the bad row (schemas.bad_rows)
        self.raw = raw  # what was read of the body, for the dead-letter topic


def content_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_limited(request: Request, limit: int = MAX_WIRE_BYTES, timeout_s: float | None = None) -> bytes:
    """Read the body, refusing it as soon as it passes `limit` bytes (no unbounded buffering), or when it
    has not arrived within `timeout_s` plus a second per BODY_MIN_BYTES_PER_S bytes received (408)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, "body", f"request body is {declared} bytes; the limit is {limit}", rule="body_too_large")
    chunks: list[bytes] = []
    size = 0
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout_at(started + timeout_s if timeout_s else None) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, "body", f"request body exceeds the limit of {limit} bytes", rule="body_too_large")
                chunks.append(chunk)
                if timeout_s:
                    deadline.reschedule(started + timeout_s + size / BODY_MIN_BYTES_PER_S)
    except TimeoutError as exc:
        reason = f"timed out reading the request body: {size} bytes arrived, too slowly"
        raise BodyError(408, "body", reason, b"".join(chunks), rule="body_timeout") from exc
    return b"".join(chunks)


def gunzip_limited(data: bytes, limit: int = MAX_BATCH_BYTES) -> bytes:
    """Inflate a gzip body, refusing it when it would inflate past `limit` (a gzip bomb)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, "body", f"Content-Encoding is gzip but the body is not valid gzip ({exc})", rule="invalid_gzip") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "body", f"gzip body inflates past the limit of {limit} bytes", rule="body_too_large")
    if not inflater.eof:
        raise BodyError(400, "body", "gzip body is truncated", rule="invalid_gzip")
    if inflater.unused_data:
        raise BodyError(400, "body", "data after the end of the gzip stream; send one gzip member", rule="invalid_gzip")
    return out


async def read_json_body(request: Request, timeout_s: float | None = None) -> Any:
    """The parsed JSON body of a tracking request, or a BodyError naming what is wrong."""
    data = await read_limited(request, timeout_s=timeout_s)
    try:
        return _parse(data, request.headers.get("content-encoding", ""), content_type_of(request))
    except BodyError as exc:
        exc.raw = data
        raise


def _parse(data: bytes, content_encoding: str, content_type: str) -> Any:
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        data = gunzip_limited(data)
    elif encoding not in ("", "identity"):
        raise BodyError(
            415, "content-encoding", f"unsupported content encoding {encoding!r}; send gzip or none", rule="unsupported_content_encoding"
        )
    if len(data) > MAX_BATCH_BYTES:
        raise BodyError(413, "body", f"body is {len(data)} bytes; the limit is {MAX_BATCH_BYTES}", rule="body_too_large")
    declared_json = content_type in JSON_CONTENT_TYPES
    if not data.strip():
        raise BodyError(400, "body", "empty body; send a JSON object", rule="empty_body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not declared_json:
            reason = f"the body, declared {content_type!r}, is not JSON ({exc}); send a JSON body (application/json or text/plain)"
            raise BodyError(415, "content-type", reason, rule="unsupported_content_type") from exc
        raise BodyError(400, "body", f"invalid JSON: {exc}", rule="invalid_json") from exc
