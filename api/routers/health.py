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
    """Ready once ClickHouse answers and every topic the API keeps in memory was read to its end: until then
    writes that check against them answer 503, so a load balancer should not send any."""
    state = request.app.state
    try:
        await state.reader.rows("SELECT 1 AS ok")
    except ReadUnavailable:
        return JSONAnswer({"status": "not ready", "reads": "unavailable"}, 503)
    loading = [name for name, catalog in state.catalogs.items() if not catalog.loaded]
    configs = getattr(state, "configs", None)  # started with the app's lifespan
    if configs is None or not configs.is_loaded:
        loading.append("configs")
    if loading:
        return JSONAnswer({"status": "not ready", "loading": loading}, 503)
    return JSONAnswer({"status": "ready"})
