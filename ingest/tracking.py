"""The tracking API, read top to bottom: body → write key → calls → limits → raw events → Kafka → answer.

Nothing is acknowledged before Kafka has it; nothing refused is lost (it goes to the dead-letter
topic with its reason, source and receive time). A step that refuses the request raises `Refusal`.
A source with `hash_emails` has its email addresses hashed on both topics (ingest.privacy).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ingest import metrics
from ingest.body import BodyError, read_json_body
from ingest.config import CollectorConfig
from ingest.edge import edge_of
from ingest.kafka_writer import Event, KafkaUnavailable, KafkaWriter, Record
from ingest.limits import Limits
from ingest.normalize import NOTHING_INHERITED, Edge, Normalization, normalize_all, problems_from
from ingest.pixel import pixel_call
from ingest.privacy import mask_kept, mask_text
from ingest.responses import Refusal, gif_response, json_response, problem_list
from ingest.sources import Source, SourceRegistry, write_key_of
from schemas.bad_rows import BadRow, Problem
from schemas.topics import Topics
from schemas.tracking import BatchEnvelope, TrackingCall

log = logging.getLogger(__name__)

MAX_BAD_PAYLOAD_CHARS = 64 * 1024
LABELLED_FIELDS = {*TrackingCall.model_fields, "event", "userId or anonymousId", "body", "batch", "content-type", "content-encoding", "data"}


class TrackingAPI:
    """The handlers and what they share: write keys, limits and the Kafka writer (one per worker process)."""

    def __init__(self, config: CollectorConfig, sources: SourceRegistry, topics: Topics):
        self.sources = sources
        self.limits = Limits(config.source_rate_limit, config.device_rate_limit)
        self.retry_after = {"Retry-After": str(config.collector_retry_after_s)}
        self.body_timeout_s = config.collector_body_timeout_s
        self.dead_letter_topic = topics.dead_letter.name
        self.writer: KafkaWriter | None = None

    # -- endpoints ------------------------------------------------------------------------------------

    async def post(self, request: Request, call_type: str | None) -> Response:
        """POST /v1/<call> (one call of the route's type) and /v1/batch."""
        try:
            known = self.check_key_before_body(request)
            body = await self.read_body(request, known)
            outcome = await self.take(request, body, call_type, batch=call_type is None)
        except Refusal as refusal:
            return refusal.response()
        return answer(outcome, single=call_type is not None)

    async def pixel(self, request: Request) -> Response:
        """GET /v1/pixel[/<call>]: always a 1×1 GIF; the status says what became of the event."""
        try:
            known = self.check_key_before_body(request)
            call = await self.pixel_call(request, known)
            outcome = await self.take(request, call, request.path_params.get("call_type"), batch=False)
        except Refusal as refusal:
            return gif_response(refusal.status, refusal.headers)
        return gif_response(400 if outcome.rejected else 200)

    # -- the steps ------------------------------------------------------------------------------------

    def check_key_before_body(self, request: Request) -> Source | None:
        """A key in the headers or the URL is checked before the body is read, so a request with a wrong
        or disabled key, or from an origin its source does not list, writes nothing, not even a bad row.
        (A key can only be in the body too: such a request's unreadable body is still kept, without a source.)"""
        if key := write_key_of(request):
            source = self.source_of(key)
            check_origin(request, source)
            return source
        return None

    async def read_body(self, request: Request, known: Source | None) -> Any:
        try:
            return await read_json_body(request, self.body_timeout_s)
        except BodyError as error:
            raise await self.kept(error, error.raw.decode("utf-8", "backslashreplace"), None, hashes_emails(known)) from error

    async def pixel_call(self, request: Request, known: Source | None) -> Any:
        try:
            return pixel_call(request.query_params)
        except BodyError as error:
            raise await self.kept(error, request.url.query, None, hashes_emails(known)) from error

    async def take(self, request: Request, body: Any, call_type: str | None, batch: bool) -> Normalization:
        """Everything after the body: accepted calls are on the raw topic when this returns.
        A single call gets the route's type (`call_type`), when the route names one."""
        source = self.authenticate(request, body)
        check_origin(request, source)
        edge = edge_of(request, source)
        calls, inherited = await self.calls_of(body, call_type, batch, edge)
        self.limits.admit_source(source, len(calls))
        outcome = normalize_all(calls, edge, inherited)
        self.limits.admit_devices(source, outcome.device_counts())
        await self.deliver(self.bad_rows_of(outcome, edge), events_of(outcome))
        count_events(outcome)
        return outcome

    def authenticate(self, request: Request, body: Any) -> Source:
        return self.source_of(write_key_of(request, body))

    def source_of(self, key: str | None) -> Source:
        if not key:
            raise Refusal.of(401, "writeKey", "missing; send it as the Basic auth user, X-Write-Key, ?writeKey= or in the body")
        source = self.sources.find(key)
        if source is None:
            raise Refusal.of(401, "writeKey", "unknown write key")
        if not source.enabled:
            raise Refusal.of(403, "writeKey", "this source is disabled")
        return source

    async def calls_of(self, body: Any, call_type: str | None, batch: bool, edge: Edge) -> tuple[list[Any], BatchEnvelope]:
        """The calls of a request and what each inherits from a batch (context, sentAt)."""
        if not batch:
            return [{**body, "type": call_type} if call_type and isinstance(body, dict) else body], NOTHING_INHERITED
        try:
            envelope = batch_envelope(body)
        except BodyError as error:
            raise await self.kept(error, body, edge) from error
        return envelope.batch, envelope

    def bad_rows_of(self, outcome: Normalization, edge: Edge) -> list[Record]:
        return [self.bad_row(call, problems, edge, index) for index, call, problems in outcome.rejected]

    async def deliver(self, records: list[Record], events: list[Event] | None = None) -> None:
        """Bad rows as records of their own; accepted events into the flush window's envelopes (ingest.kafka_writer)."""
        if self.writer is None:
            raise Refusal.of(503, "kafka", "the collector is starting; retry", self.retry_after)
        started = time.perf_counter()
        try:
            await self.writer.write(records, events or ())
        except KafkaUnavailable as exc:
            log.debug("answering 503: %s", exc)
            raise Refusal.of(503, "kafka", "temporarily unavailable; retry", self.retry_after) from exc
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    # -- the dead-letter topic ------------------------------------------------------------------------

    async def kept(self, error: BodyError, payload: Any, edge: Edge | None, hash_emails: bool = False) -> Refusal:
        """Keep an unusable body on the dead-letter topic; the refusal to answer once Kafka has it.
        Without an edge (the body came before the calls), `hash_emails` is the wish of the source its
        headers named, if any."""
        problem = Problem(field=error.field, reason=error.reason)
        await self.deliver([self.bad_row(payload, [problem], edge, hash_emails=hash_emails)])
        metrics.child(metrics.EVENTS_REJECTED, metric_field(problem.field)).inc()
        # A body too slow to arrive: the connection goes too, or the rest of it would keep trickling in.
        return Refusal(error.status, [problem], {"Connection": "close"} if error.status == 408 else None)

    def bad_row(self, payload: Any, problems: list[Problem], edge: Edge | None, index: int | None = None, *, hash_emails: bool = False) -> Record:
        """A refused payload as the dead-letter topic keeps it: masked first when its source hashes emails
        (before the cut to MAX_BAD_PAYLOAD_CHARS, which could leave half an address unrecognisable)."""
        mask = edge.hash_emails if edge else hash_emails
        text = mask_text(payload_text(mask_kept(payload))) if mask else payload_text(payload)
        row = BadRow(
            stage="collector",
            problems=problems,
            source_id=edge.source_id if edge else None,
            received_at=edge.received_at if edge else datetime.now(UTC),
            payload=text[:MAX_BAD_PAYLOAD_CHARS],
            index=index,
        )
        return Record(self.dead_letter_topic, edge.source_id if edge else None, row.model_dump_json().encode())


def events_of(outcome: Normalization) -> list[Event]:
    return [Event(event.device_key.encode(), event.value) for event in outcome.accepted]


def hashes_emails(source: Source | None) -> bool:
    return source is not None and source.hash_emails


def check_origin(request: Request, source: Source) -> None:
    origin = request.headers.get("origin")
    if not source.allows_origin(origin):
        raise Refusal.of(403, "origin", f"{origin} may not send to this source")


def batch_envelope(body: Any) -> BatchEnvelope:
    if not isinstance(body, dict):
        raise BodyError(400, "body", "a batch must be a JSON object with a 'batch' array")
    try:
        return BatchEnvelope.model_validate(body)
    except ValidationError as exc:
        too_long = any(e["type"] == "too_long" and e["loc"] == ("batch",) for e in exc.errors())
        problem = problems_from(exc)[0]
        raise BodyError(413 if too_long else 400, problem.field, problem.reason) from exc


def payload_text(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        return "(not kept: nested too deep to write as JSON)"


def metric_field(field: str) -> str:
    """The metric label: `properties` for `properties.a[3].b`; names a client made up become "other"."""
    top = field.split(".", 1)[0].split("[", 1)[0]
    return top if top in LABELLED_FIELDS else "other"


def count_events(outcome: Normalization) -> None:
    by_type: dict[str, int] = {}
    for event in outcome.accepted:
        by_type[event.type] = by_type.get(event.type, 0) + 1
    for call_type, count in by_type.items():
        metrics.child(metrics.EVENTS_ACCEPTED, call_type).inc(count)
    for _index, _call, problems in outcome.rejected:
        metrics.child(metrics.EVENTS_REJECTED, metric_field(problems[0].field)).inc()


def answer(outcome: Normalization, single: bool) -> Response:
    rejected = [{"index": index, "errors": problem_list(problems)} for index, _call, problems in outcome.rejected]
    if single:
        if rejected:
            return json_response(400, {"success": False, "errors": rejected[0]["errors"]})
        return json_response(200, {"success": True})
    if outcome.accepted or not rejected:
        return json_response(200, {"success": True, "accepted": len(outcome.accepted), "rejected": rejected})
    errors = [{"field": "batch", "reason": "every call was rejected; see rejected"}]
    return json_response(400, {"success": False, "errors": errors, "accepted": 0, "rejected": rejected})
