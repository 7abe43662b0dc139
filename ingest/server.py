"""The collector's HTTP protocol: uvicorn's (httptools) with a deadline on each request's headers.

uvicorn has no header-read timeout: a connection that sends nothing, or its headers a byte at a time
(slowloris), is held open for as long as the client likes (the keep-alive timer runs only between
requests, and every byte received cancels it). The event loop keeps serving everyone else, but each
such connection holds a socket and a little memory, and enough of them exhaust the process's file
descriptors. Here a request's headers must be complete within FOOTFALL_COLLECTOR_HEADER_TIMEOUT_S of
its first byte (of the connection, for a connection's first request); else the connection is answered
408 and closed. The body has its own deadline (ingest.body.read_limited).
"""

from __future__ import annotations

import asyncio
import functools

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.config import CollectorConfig

_BODY = orjson.dumps({"success": False, "errors": [{"field": "headers", "reason": "timed out reading the request headers"}]})
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


@functools.cache
def header_timeout_s() -> float:
    return CollectorConfig().collector_header_timeout_s


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own: asyncio calls it with a Transport
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a no-op for the connection's first request: its deadline runs from the connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(header_timeout_s(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined request lags behind a response: close after that one
            return
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
