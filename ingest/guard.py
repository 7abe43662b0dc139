"""The last resort: whatever goes wrong inside, the client gets a JSON reason and a status it can act on.

An unexpected exception is a bug of ours, not of the request, so the answer is 503 + Retry-After:
SDKs keep the events and retry, where a bare 500 (or a 400) could make them drop the events. The log
line names the exception type and where it happened, never its message (which may quote a payload).
"""

from __future__ import annotations

import logging
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.responses import Refusal

log = logging.getLogger(__name__)


class LastResortGuard:
    def __init__(self, app: ASGIApp, retry_after_s: int = 5):
        self.app = app
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            log.error(
                "unexpected %s answering %s %s:\n%s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if started:
                raise
            refusal = Refusal.of(
                503, "collector", "internal_error", "unexpected internal error; retry later", {"Retry-After": self.retry_after}
            )
            await refusal.response()(scope, receive, send)
