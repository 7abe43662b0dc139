"""CORS, so browsers on other origins can send; restricted per source where the source lists origins.

Starlette's CORSMiddleware does the protocol. A preflight carries no body and no credentials, so
which source a request is for is known before the body only when the write key is in the URL
(`?writeKey=`, or the settings path): then that source's own CORSMiddleware answers. Every other
request gets the permissive one, and the tracking handlers refuse a browser whose Origin the
source does not list (403) once the key is known — CORS only stops a page from reading an answer,
not from sending, so the refusal is what actually keeps other sites out.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.sources import Source, SourceRegistry

SETTINGS_PATH = re.compile(r"^/v1/projects/([^/]+)/settings$")
CORS_OPTIONS = {
    "allow_methods": ("GET", "POST", "OPTIONS"),
    "allow_headers": ("*",),
    "max_age": 86_400,
}


class SourceCORS:
    def __init__(self, app: ASGIApp, sources: SourceRegistry):
        self.app = app
        self.sources = sources
        self.any_origin = CORSMiddleware(app, allow_origins=("*",), **CORS_OPTIONS)
        self._restricted: dict[str, CORSMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "POST" and b"origin" not in dict(scope["headers"])):
            # A server-side SDK's POST: no CORS headers to add, and no cache to tell that they vary by Origin.
            await self.app(scope, receive, send)
            return
        source = self._source_in_url(scope)
        if source is None or not source.allowed_origins:
            await self.any_origin(scope, receive, send)
            return
        await self._cors_of(source)(scope, receive, send)

    def _source_in_url(self, scope: Scope) -> Source | None:
        if match := SETTINGS_PATH.match(scope["path"]):
            return self.sources.find(match.group(1))
        query = scope.get("query_string", b"")
        if b"writeKey=" not in query:
            return None
        keys = parse_qs(query.decode("latin-1")).get("writeKey")
        return self.sources.find(keys[0]) if keys else None

    def _cors_of(self, source: Source) -> CORSMiddleware:
        if source.id not in self._restricted:
            self._restricted[source.id] = CORSMiddleware(self.app, allow_origins=source.allowed_origins, **CORS_OPTIONS)
        return self._restricted[source.id]
