"""The collector's HTTP API, read top to bottom: body → write key → calls → raw events → Kafka → answer.

Nothing is acknowledged before Kafka has it; nothing refused is lost (it goes to the dead-letter topic).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest import metrics
from ingest.body import BodyError, read_json_body
from ingest.kafka_writer import KafkaUnavailable, KafkaWriter, Record
from ingest.normalize import Edge, Rejected, normalize
from ingest.sources import Source, SourceRegistry, write_key_of
from schemas.bad_rows import BadRow, Problem
from schemas.config import FootfallSettings
from schemas.tracking import MAX_BATCH_EVENTS

log = logging.getLogger(__name__)

SINGLE_ROUTES = {
    "track": ("/v1/track", "/v1/t"),
    "identify": ("/v1/identify", "/v1/i"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "group": ("/v1/group", "/v1/g"),
    "alias": ("/v1/alias", "/v1/a"),
}
BATCH_ROUTES = ("/v1/batch", "/v1/b", "/b")
RETRY_AFTER_SECONDS = "5"
MAX_BAD_PAYLOAD_CHARS = 64 * 1024


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, problems: list[Problem], headers: dict[str, str] | None = None) -> Response:
    return json_response(
        status, {"success": False, "errors": [p.model_dump() for p in problems]}, headers=headers
    )


class Collector:
    """Holds what the handlers share: settings, the Kafka writer and the write keys."""

    def __init__(self, settings: FootfallSettings, writer: KafkaWriter | None, sources: SourceRegistry):
        self.settings = settings
        self.writer = writer
        self.sources = sources
        self.raw_topic = settings.topics.raw.name
        self.dead_letter_topic = settings.topics.dead_letter.name

    # -- the steps of a tracking request -------------------------------------------------------------

    def edge_of(self, request: Request, source: Source) -> Edge:
        return Edge(
            source_id=source.id,
            received_at=datetime.now(UTC),
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )

    def authenticate(self, request: Request, body: Any) -> Source | Response:
        key = write_key_of(request, body)
        if not key:
            return error_response(401, [Problem(field="writeKey", reason="missing; send it as Basic auth user, X-Write-Key, ?writeKey= or in the body")])
        source = self.sources.find(key)
        if source is None:
            return error_response(401, [Problem(field="writeKey", reason="unknown write key")])
        if not source.enabled:
            return error_response(403, [Problem(field="writeKey", reason="this source is disabled")])
        return source

    def bad_row(self, payload: Any, problems: list[Problem], edge: Edge | None, index: int | None = None) -> Record:
        text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        row = BadRow(
            stage="collector",
            problems=problems,
            source_id=edge.source_id if edge else None,
            received_at=edge.received_at if edge else datetime.now(UTC),
            payload=text[:MAX_BAD_PAYLOAD_CHARS],
            index=index,
        )
        key = edge.source_id.encode() if edge else None
        return Record(self.dead_letter_topic, key, row.model_dump_json().encode())

    def to_records(self, calls: list[Any], edge: Edge, context: dict | None) -> tuple[list[Record], list[dict]]:
        """Normalise each call; accepted ones go to the raw topic, refused ones to the dead-letter topic."""
        records, rejected = [], []
        for index, call in enumerate(calls):
            try:
                event = normalize(call, edge, context)
            except Rejected as refusal:
                records.append(self.bad_row(call, refusal.problems, edge, index))
                rejected.append({"index": index, "errors": [p.model_dump() for p in refusal.problems]})
                for problem in refusal.problems:
                    metrics.EVENTS_REJECTED.labels(field=problem.field.split(".")[0]).inc()
                continue
            records.append(Record(self.raw_topic, event.device_key.encode(), event.model_dump_json().encode()))
            metrics.EVENTS_ACCEPTED.labels(type=event.type).inc()
        return records, rejected

    async def deliver(self, records: list[Record]) -> Response | None:
        if self.writer is None:
            return error_response(503, [Problem(field="kafka", reason="collector is starting")], {"Retry-After": RETRY_AFTER_SECONDS})
        started = time.perf_counter()
        try:
            await self.writer.write(records)
        except KafkaUnavailable as exc:
            log.warning("answering 503: %s", exc)
            return error_response(503, [Problem(field="kafka", reason="temporarily unavailable; retry")], {"Retry-After": RETRY_AFTER_SECONDS})
        finally:
            metrics.QUEUE_DEPTH.set(self.writer.queue_depth)
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        return None

    # -- handlers -----------------------------------------------------------------------------------

    async def handle(self, request: Request, call_type: str | None) -> Response:
        try:
            body = await read_json_body(request)
        except BodyError as exc:
            return await self.refuse_body(exc)
        source = self.authenticate(request, body)
        if isinstance(source, Response):
            return source
        edge = self.edge_of(request, source)

        if call_type is None:
            try:
                calls, context = split_batch(body)
            except BodyError as exc:
                return await self.refuse_body(exc, body, edge)
        else:
            if isinstance(body, dict):
                body = {**body, "type": call_type}
            calls, context = [body], None

        records, rejected = self.to_records(calls, edge, context)
        if failure := await self.deliver(records):
            return failure
        accepted = len(calls) - len(rejected)
        if call_type is not None and rejected:
            return error_response(400, [Problem(**e) for e in rejected[0]["errors"]])
        status = 200 if accepted or not calls else 400
        return json_response(status, {"success": accepted > 0 or not calls, "accepted": accepted, "rejected": rejected})

    async def refuse_body(self, error: BodyError, payload: Any = None, edge: Edge | None = None) -> Response:
        """A body that cannot be used is still kept (truncated) on the dead-letter topic, with its reason."""
        problem = Problem(field=error.field, reason=error.reason)
        if payload is None:
            payload = error.raw.decode("utf-8", "backslashreplace")
        if failure := await self.deliver([self.bad_row(payload, [problem], edge)]):
            return failure
        return error_response(error.status, [problem])


def split_batch(body: Any) -> tuple[list[Any], dict | None]:
    """A batch body's calls and the context every call inherits."""
    if not isinstance(body, dict):
        raise BodyError(400, "body", "a batch must be a JSON object with a 'batch' array")
    calls = body.get("batch")
    if not isinstance(calls, list):
        raise BodyError(400, "batch", "required; an array of calls")
    if len(calls) > MAX_BATCH_EVENTS:
        raise BodyError(413, "batch", f"{len(calls)} calls; at most {MAX_BATCH_EVENTS} per batch")
    context = body.get("context")
    return calls, context if isinstance(context, dict) else None


def create_app(settings: FootfallSettings | None = None, sources: SourceRegistry | None = None) -> Starlette:
    """The ASGI app; the Kafka writer lives as long as the server (one per worker process)."""
    settings = settings or FootfallSettings()
    collector = Collector(settings, None, sources or SourceRegistry.from_environment())

    @asynccontextmanager
    async def lifespan(_app):
        collector.writer = KafkaWriter(settings.kafka_bootstrap_servers)
        try:
            yield
        finally:
            collector.writer.close()

    def tracking_endpoint(call_type: str | None, route: str):
        async def endpoint(request: Request) -> Response:
            response = await collector.handle(request, call_type)
            metrics.REQUESTS.labels(route=route, status=response.status_code).inc()
            return response

        return endpoint

    async def healthz(_request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def readyz(_request: Request) -> Response:
        ready = collector.writer is not None and collector.writer.broker_reachable()
        return json_response(200 if ready else 503, {"kafka": "reachable" if ready else "unreachable"})

    async def prometheus(_request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    routes = []
    for call_type, paths in SINGLE_ROUTES.items():
        routes += [Route(path, tracking_endpoint(call_type, paths[0]), methods=["POST"]) for path in paths]
    routes += [Route(path, tracking_endpoint(None, "/v1/batch"), methods=["POST"]) for path in BATCH_ROUTES]
    routes += [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.collector = collector
    return app
