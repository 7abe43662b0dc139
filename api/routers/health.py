"""Liveness and readiness of `footfall api` (no key needed: they say nothing about users)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.errors import JSONAnswer
from api.reads import ReadUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONAnswer:
    try:
        await request.app.state.reader.rows("SELECT 1 AS ok")
    except ReadUnavailable:
        return JSONAnswer({"status": "not ready", "reads": "unavailable"}, 503)
    return JSONAnswer({"status": "ready"})
