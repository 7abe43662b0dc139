"""The collector's ASGI app: routes, middleware and the Kafka writer's lifetime (one per worker process).

Middleware, outermost first: trusted proxies' X-Forwarded-For (uvicorn's), CORS per source, request
metrics, then the last-resort guard, so even an unexpected failure is counted and answered with CORS
headers and a JSON reason.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ingest import geo, metrics
from ingest.cdn_settings import CACHE_CONTROL, api_host_of, settings_document
from ingest.config import CollectorConfig
from ingest.configs import ConfigServing, ConfigState
from ingest.cors import SourceCORS
from ingest.guard import LastResortGuard
from ingest.kafka_writer import EnvelopeWindow, KafkaWriter
from ingest.openapi import collector_openapi
from ingest.responses import Refusal, json_response
from ingest.sdk_bundle import sdk_bundle_routes
from ingest.suppression import Suppressions
from ingest.tracking import TrackingAPI
from schemas.config import FootfallSettings, tune_garbage_collector
from schemas.tail import TopicTail
from schemas.tracking import CALL_TYPES

# POST /v1/<call>: the call type each name stands for (None: a batch), long and short forms alike.
# One route for all of them, because the router tries routes one regex at a time.
CALLS: dict[str, str | None] = {
    **{name: name for name in CALL_TYPES},
    **{name[0]: name for name in CALL_TYPES},
    "batch": None,
    "b": None,
}
PIXEL_ROUTES = ("/v1/pixel", "/v1/pixel/{call_type}")


def create_app(settings: FootfallSettings | None = None, config: CollectorConfig | None = None) -> Starlette:
    settings = settings or FootfallSettings()
    config = config or CollectorConfig()
    sources = config.sources()
    api = TrackingAPI(config, sources, settings.topics)
    config_state = ConfigState(settings.topics)
    configs = ConfigServing(api, config_state, config.config_exposure_window_s)

    @asynccontextmanager
    async def lifespan(_app):
        tune_garbage_collector(settings)
        geo.warm()  # open the GeoIP data before the first request, not during it
        window = EnvelopeWindow(settings.topics.raw.name, settings.collector_flush_seconds, settings.envelope_limits)
        api.writer = KafkaWriter(settings.kafka_bootstrap_servers, window, ack_timeout_s=config.collector_ack_timeout_s)
        await api.writer.broker_reachable()  # the raw topic's partitions, before the first request if Kafka is up
        tail = TopicTail(settings.kafka_bootstrap_servers, list(config_state.handlers), config_state.on_record, "collector-configs")
        configs.loaded = tail.start().ready
        api.suppressions = Suppressions(settings.kafka_bootstrap_servers, settings.topics.erasures.name).start()
        try:
            yield
        finally:
            tail.stop()
            api.writer.close()
            api.suppressions.close()

    async def post_call(request: Request) -> Response:
        name = request.path_params.get("call", "b")  # the bare /b route is a batch
        if name not in CALLS:
            return Refusal.of(404, "path", "unknown_call", f"no such call; POST to /v1/{{{', '.join(CALLS)}}}").response()
        return await api.post(request, CALLS[name])

    async def project_settings(request: Request) -> Response:
        try:
            source = api.source_of(request.path_params["writeKey"])
        except Refusal as refusal:
            return refusal.response()
        api_host = api_host_of(request, source, config.public_api_host)
        document = settings_document(source, api_host, request.url.scheme)
        return json_response(200, document, {"Cache-Control": CACHE_CONTROL})

    async def healthz(_request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def readyz(_request: Request) -> Response:
        ready = api.writer is not None and await api.writer.broker_reachable()
        return json_response(200 if ready else 503, {"kafka": "reachable" if ready else "unreachable"})

    async def prometheus(_request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi_document(_request: Request) -> Response:
        return json_response(200, collector_openapi())

    routes = [Route("/v1/configs", configs.post, methods=["POST"]), Route("/v1/configs", configs.get, methods=["GET"])]
    routes += [Route("/v1/{call}", post_call, methods=["POST"]), Route("/b", post_call, methods=["POST"])]
    routes += [Route(path, api.pixel, methods=["GET"]) for path in PIXEL_ROUTES]
    routes += [
        Route("/v1/projects/{writeKey}/settings", project_settings, methods=["GET"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
        Route("/openapi.json", openapi_document),
    ]
    routes += sdk_bundle_routes(settings.web_assets_dir)
    middleware = [
        Middleware(SourceCORS, sources=sources),
        Middleware(metrics.RequestMetrics),
        Middleware(LastResortGuard, retry_after_s=config.collector_retry_after_s),
    ]
    if trusted := config.trusted_proxy_list:
        middleware.insert(0, Middleware(ProxyHeadersMiddleware, trusted_hosts=trusted))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: http_error})


async def http_error(_request: Request, exc: HTTPException) -> Response:
    """Unknown paths and wrong methods answer JSON with a reason too."""
    field = "method" if exc.status_code == 405 else "path"
    return Refusal.of(exc.status_code, field, "not_allowed" if exc.status_code == 405 else "not_found", exc.detail, exc.headers).response()
