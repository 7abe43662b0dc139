"""Admin pages, each shown once its API exists."""

from __future__ import annotations

from starlette.requests import Request

ROUTES: list = []


def nav(request: Request) -> list[dict[str, str]]:
    return []
