"""Liveness and readiness of `footfall api` (no key needed: they say nothing about users)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse

from api.reads import ReadUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> ORJSONResponse:
    try:
        await request.app.state.reader.rows("SELECT 1 AS ok")
    except ReadUnavailable:
        return ORJSONResponse({"status": "not ready", "reads": "unavailable"}, 503)
    return ORJSONResponse({"status": "ready"})
