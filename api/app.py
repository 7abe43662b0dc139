"""The management API's app factory: one FastAPI app, its routers mounted under /api/v1/.

    create_app(...) ─► auth (admin key) ─► routers (api/routers/: users, ...) ─► commands on Kafka (CommandBus)
                                                                              └► reads (Reader: ClickHouse or the read API)

The web console will be served by the same app at `/` (a router of its own). Add a router by listing it
in api/routers/__init__.py; every router under /api/v1 depends on `require_admin`.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI

from api.auth import AdminKey, require_admin
from api.commands import CommandBus, CommandsUnavailable
from api.configs import ConfigCatalog
from api.definitions import Definitions, PropertyValidator
from api.errors import ApiError, FieldError, install_error_handlers
from api.groups import Lists, Segments, SegmentStatuses, Stages
from api.idempotency import IdempotencyCache
from api.jobs import Jobs
from api.metrics import ApiMetrics
from api.objects import ObjectTypes
from api.reads import Reader, ReadUnavailable
from api.routers import API_ROUTERS, PUBLIC_ROUTERS
from api.routers.webhooks import Webhooks
from schemas.config import FootfallSettings

API_PREFIX = "/api/v1"


@dataclass
class ApiConfig:
    """What the API needs beyond the shared settings (environment: FOOTFALL_API_*)."""

    wait_timeout_s: float = 10.0  # ?wait=true gives up after this long (202: accepted, not readable yet)
    bulk_max_refs: int = 10_000


def create_app(
    settings: FootfallSettings,
    admin_key: str,
    reader: Reader,
    bus: CommandBus | None = None,
    config: ApiConfig | None = None,
) -> FastAPI:
    """The app. `bus` defaults to a CommandBus on the settings' brokers, made when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_bus = app.state.bus is None
        if own_bus:
            app.state.bus = CommandBus(settings.kafka_bootstrap_servers)
        app.state.bus.acknowledged = app.state.metrics.count_published
        for catalog in app.state.catalogs.values():
            catalog.start()
        app.state.configs = ConfigCatalog(settings).start()
        try:
            yield
        finally:
            app.state.configs.stop()
            for catalog in app.state.catalogs.values():
                catalog.stop_following()  # all at once, then one deadline for all: each may be waiting on Kafka
            deadline = time.monotonic() + 5
            for catalog in app.state.catalogs.values():
                catalog.close(max(0.0, deadline - time.monotonic()))
            if own_bus:
                app.state.bus.close()
            if hasattr(reader, "close"):
                await reader.close()

    app = FastAPI(
        title="footfall management API",
        version="1",
        summary="Create, read, update, tag, disable, delete and erase users; companies and their members; every write is a command on Kafka.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.admin_key = AdminKey(admin_key)
    app.state.reader = reader
    app.state.bus = bus
    app.state.config = config or ApiConfig()
    app.state.idempotency = IdempotencyCache()
    app.state.jobs = Jobs()
    app.state.metrics = ApiMetrics()
    app.state.metrics.instrument(app)
    app.state.definitions = Definitions(settings.kafka_bootstrap_servers, settings.topics.property_definitions.name)
    app.state.property_validator = PropertyValidator(app.state.definitions)
    app.state.stages = Stages(settings.kafka_bootstrap_servers, settings.topics.lifecycle_stages.name)
    app.state.lists = Lists(settings.kafka_bootstrap_servers, settings.topics.lists.name)
    app.state.segments = Segments(settings.kafka_bootstrap_servers, settings.topics.segments.name)
    app.state.segment_statuses = SegmentStatuses(settings.kafka_bootstrap_servers, settings.topics.segment_status.name)
    app.state.webhooks = Webhooks(settings.kafka_bootstrap_servers, settings.topics.webhooks.name)
    app.state.company_property_validator = PropertyValidator(app.state.definitions, "company")
    app.state.object_types = ObjectTypes(settings.kafka_bootstrap_servers, settings.topics.object_types.name)
    app.state.catalogs = {
        name: getattr(app.state, name)
        for name in ("definitions", "stages", "lists", "segments", "segment_statuses", "webhooks", "object_types")
    }
    install_error_handlers(app)

    @app.exception_handler(CommandsUnavailable)
    async def kafka_unavailable(request, _exc: CommandsUnavailable):
        error = ApiError(
            503, [FieldError("kafka", "available", "Kafka did not acknowledge the command; retry")], headers={"Retry-After": "1"}
        )
        return await app.exception_handlers[ApiError](request, error)

    @app.exception_handler(ReadUnavailable)
    async def reads_unavailable(request, _exc: ReadUnavailable):
        error = ApiError(503, [FieldError("clickhouse", "available", "the read side did not answer; retry")], headers={"Retry-After": "1"})
        return await app.exception_handlers[ApiError](request, error)

    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(require_admin)])
    return app
