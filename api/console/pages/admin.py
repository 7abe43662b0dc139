"""Admin pages. Each appears in the navigation once its API exists (Sources needs none: it shows the
collector's configured write keys)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console.app import console, login_required
from api.console.snippet import browser_snippet, server_examples


def collector_url(request: Request) -> str:
    c = console(request)
    if c.config.collector_url:
        return c.config.collector_url.rstrip("/")
    settings = c.settings
    return f"http://{settings.collector_host}:{settings.collector_port}" if settings is not None else "http://127.0.0.1:8080"


@login_required
async def sources(request: Request) -> Response:
    url = collector_url(request)
    listed = [
        {"id": source_id, "write_key": key, "snippet": browser_snippet(url, key), "examples": server_examples(url, key)}
        for source_id, key in console(request).sources
    ]
    return console(request).render(request, "sources.html", section="sources", sources=listed, collector_url=url)


ROUTES: list = [Route("/admin/sources", sources, name="sources")]


def nav(request: Request) -> list[dict[str, str]]:
    return [{"url": "/admin/sources", "label": "Sources", "section": "sources"}]
