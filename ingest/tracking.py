"""The tracking API, read top to bottom: body → write key → calls → limits → raw events → Kafka → answer.

Nothing is acknowledged before Kafka has it; nothing refused is lost (it goes to the dead-letter
topic as a typed bad row: kind, field, rule, reason, source and receive time; schemas/bad_rows.py).
A step that refuses the request raises `Refusal`.
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
from ingest.limits import Buckets, Limits
from ingest.normalize import NOTHING_INHERITED, Edge, Normalization, normalize_all, problems_from
from ingest.pixel import pixel_call
from ingest.privacy import mask_kept, mask_text
from ingest.responses import Refusal, gif_response, json_response, problem_list
from ingest.sources import RateLimit, Source, SourceRegistry, write_key_of
from ingest.suppression import Suppressions
from schemas.bad_rows import BadRow, BadRowKind, Problem, bounded_payload, kind_of, message_id_in
from schemas.topics import Topics
from schemas.tracking import BatchEnvelope, TrackingCall

log = logging.getLogger(__name__)

# Pixel calls refused by a rate limit are kept (a pixel is never retried), up to this many a second per source:
# past it a flood would reach Kafka after all, so the rest are only counted.
DROPPED_PIXELS_KEPT = RateLimit(events_per_second=50, burst=500)
LABELLED_FIELDS = {
    *TrackingCall.model_fields,
    "event",
    "userId or anonymousId",
    "body",
    "batch",
    "content-type",
    "content-encoding",
    "data",
}


class TrackingAPI:
    """The handlers and what they share: write keys, limits and the Kafka writer (one per worker process)."""

    def __init__(self, config: CollectorConfig, sources: SourceRegistry, topics: Topics):
        self.sources = sources
        self.limits = Limits(config.source_rate_limit, config.device_rate_limit)
        self.retry_after = {"Retry-After": str(config.collector_retry_after_s)}
        self.body_timeout_s = config.collector_body_timeout_s
        self.dead_letter_topic = topics.dead_letter.name
        self.dropped_pixels_kept = Buckets(DROPPED_PIXELS_KEPT, max_keys=10_000)
        self.writer: KafkaWriter | None = None
        self.suppressions: Suppressions | None = None  # erased identifiers (ingest.suppression), set at start-up

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
            outcome = await self.take(request, call, request.path_params.get("call_type"), batch=False, retried=False)
        except Refusal as refusal:
            return gif_response(refusal.status, refusal.headers)
        return gif_response(400 if outcome.rejected else 200)

    # -- the steps ------------------------------------------------------------------------------------

    def check_key_before_body(self, request: Request) -> Source | None:
        """A key in the headers or the URL is checked before the body is read, so a request with a wrong
        or disabled key writes nothing, not even a bad row. (A key can only be in the body too: such a
        request's unreadable body is still kept, without a source.) The origin is checked with the calls."""
        if key := write_key_of(request):
            return self.source_of(key)
        return None

    async def read_body(self, request: Request, known: Source | None) -> Any:
        try:
            return await read_json_body(request, self.body_timeout_s)
        except BodyError as error:
            raise await self.dead_letter_unusable_body(
                error, error.raw.decode("utf-8", "backslashreplace"), None, hashes_emails(known)
            ) from error

    async def pixel_call(self, request: Request, known: Source | None) -> Any:
        try:
            return pixel_call(request.query_params)
        except BodyError as error:
            raise await self.dead_letter_unusable_body(error, request.url.query, None, hashes_emails(known)) from error

    async def take(self, request: Request, body: Any, call_type: str | None, batch: bool, retried: bool = True) -> Normalization:
        """Everything after the body: accepted calls are on the raw topic when this returns.
        A single call gets the route's type (`call_type`), when the route names one. `retried`: whether
        the client sends a refused request again (an SDK does, a pixel never)."""
        source = self.authenticate(request, body)
        edge = await edge_of(request, source)
        await self.check_origin_keeping(request, body, source, edge)
        calls, inherited = await self.calls_of(body, call_type, batch, edge)
        try:
            self.limits.admit_source(source, len(calls))
            outcome = normalize_all(calls, edge, inherited)
            self.limits.admit_devices(source, outcome.device_counts())
        except Refusal as refusal:
            if not retried:
                await self.keep_dropped(calls, refusal, edge)
            raise
        dropped = self.drop_erased(outcome, edge)
        await self.deliver(self.bad_rows_of(outcome, edge) + dropped, events_of(outcome))
        count_events(outcome)
        return outcome

    def authenticate(self, request: Request, body: Any) -> Source:
        return self.source_of(write_key_of(request, body))

    def source_of(self, key: str | None) -> Source:
        if not key:
            raise Refusal.of(401, "writeKey", "required", "missing; send it as the Basic auth user, X-Write-Key, ?writeKey= or in the body")
        source = self.sources.find(key)
        if source is None:
            raise Refusal.of(401, "writeKey", "unknown_key", "unknown write key")
        if not source.enabled:
            raise Refusal.of(403, "writeKey", "source_disabled", "this source is disabled")
        return source

    async def calls_of(self, body: Any, call_type: str | None, batch: bool, edge: Edge) -> tuple[list[Any], BatchEnvelope]:
        """The calls of a request and what each inherits from a batch (context, sentAt)."""
        if not batch:
            return [{**body, "type": call_type} if call_type and isinstance(body, dict) else body], NOTHING_INHERITED
        try:
            envelope = batch_envelope(body)
        except BodyError as error:
            raise await self.dead_letter_unusable_body(error, body, edge) from error
        return envelope.batch, envelope

    def drop_erased(self, outcome: Normalization, edge: Edge) -> list[Record]:
        """Take the calls of erased users out of `outcome`; their bad rows record the drop, without the payload."""
        if self.suppressions is None or not self.suppressions.digests:
            return []
        kept, dropped = [], []
        for event in outcome.accepted:
            if field := self.suppressions.erased_field(event.value):
                dropped.append(
                    self.bad_row(
                        "(not kept: an erased user's call)",
                        [Problem(field=field, reason="an erased identifier; dropped", rule="erased_identifier")],
                        edge,
                        kind="erased_identifier",
                    )
                )
            else:
                kept.append(event)
        outcome.accepted = kept
        return dropped

    def bad_rows_of(self, outcome: Normalization, edge: Edge) -> list[Record]:
        return [self.bad_row(call, problems, edge, index) for index, call, problems in outcome.rejected]

    async def deliver(self, records: list[Record], events: list[Event] | None = None) -> None:
        """Bad rows as records of their own; accepted events into the flush window's envelopes (ingest.kafka_writer)."""
        if self.writer is None:
            raise Refusal.of(503, "kafka", "starting", "the collector is starting; retry", self.retry_after)
        started = time.perf_counter()
        try:
            await self.writer.write(records, events or ())
        except KafkaUnavailable as exc:
            log.debug("answering 503: %s", exc)
            raise Refusal.of(503, "kafka", "unavailable", "temporarily unavailable; retry", self.retry_after) from exc
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    # -- the dead-letter topic ------------------------------------------------------------------------

    async def check_origin_keeping(self, request: Request, body: Any, source: Source, edge: Edge) -> None:
        """A call of a valid source from an origin the source does not list is refused (403) and kept as an
        `auth` bad row: they are real visitors' events lost to an allow-list, and the write key that lets
        anyone write this row is the public one that already lets them write events."""
        origin = request.headers.get("origin")
        if not source.allows_origin(origin):
            problem = Problem(field="origin", reason=f"{origin} may not send to this source", rule="origin_not_allowed")
            await self.deliver([self.bad_row(body, [problem], edge, kind="auth")])
            metrics.child(metrics.EVENTS_REJECTED, "origin").inc()
            raise Refusal(403, [problem])

    async def keep_dropped(self, calls: list[Any], refusal: Refusal, edge: Edge) -> None:
        """Keep the calls of a refused pixel request (a pixel is never retried) as `rate_limited_dropped`
        bad rows, within DROPPED_PIXELS_KEPT per source."""
        if refusal.status == 429 and not self.dropped_pixels_kept.admit({edge.source_id: len(calls)}):
            problems = [p.model_copy(update={"rule": "rate_limit"}) for p in refusal.problems]
            await self.deliver([self.bad_row(call, problems, edge, index, kind="rate_limited_dropped") for index, call in enumerate(calls)])

    async def dead_letter_unusable_body(self, error: BodyError, payload: Any, edge: Edge | None, hash_emails: bool = False) -> Refusal:
        """Keep an unusable body on the dead-letter topic; the refusal to answer once Kafka has it.
        Without an edge (the body came before the calls), `hash_emails` is the wish of the source its
        headers named, if any."""
        problem = Problem(field=error.field, reason=error.reason, rule=error.rule)
        await self.deliver([self.bad_row(payload, [problem], edge, hash_emails=hash_emails)])
        metrics.child(metrics.EVENTS_REJECTED, metric_field(problem.field)).inc()
        # A body too slow to arrive: the connection goes too, or the rest of it would keep trickling in.
        return Refusal(error.status, [problem], {"Connection": "close"} if error.status == 408 else None)

    def bad_row(
        self,
        payload: Any,
        problems: list[Problem],
        edge: Edge | None,
        index: int | None = None,
        *,
        hash_emails: bool = False,
        kind: BadRowKind | None = None,
    ) -> Record:
        """A refused payload as the dead-letter topic keeps it: masked first when its source hashes emails
        (before the cut to MAX_PAYLOAD_CHARS, which could leave half an address unrecognisable). The kind
        follows from the problems' rules unless given."""
        mask = edge.hash_emails if edge else hash_emails
        kept = mask_kept(payload) if mask else payload
        text = mask_text(payload_text(kept)) if mask else payload_text(payload)
        row = BadRow(
            kind=kind or kind_of(problems),
            stage="collector",
            problems=problems,
            source_id=edge.source_id if edge else None,
            received_at=edge.received_at if edge else datetime.now(UTC),
            index=index,
            message_id=message_id_in(kept),
            **bounded_payload(text),
        )
        return Record(self.dead_letter_topic, edge.source_id if edge else None, row.encode())


def events_of(outcome: Normalization) -> list[Event]:
    return [Event(event.device_key.encode(), event.value) for event in outcome.accepted]


def hashes_emails(source: Source | None) -> bool:
    return source is not None and source.hash_emails


def batch_envelope(body: Any) -> BatchEnvelope:
    if not isinstance(body, dict):
        raise BodyError(400, "body", "a batch must be a JSON object with a 'batch' array", rule="object_type")
    try:
        return BatchEnvelope.model_validate(body)
    except ValidationError as exc:
        too_long = any(e["type"] == "too_long" and e["loc"] == ("batch",) for e in exc.errors())
        problem = problems_from(exc)[0]
        raise BodyError(
            413 if too_long else 400, problem.field, problem.reason, rule="batch_too_long" if too_long else problem.rule
        ) from exc


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
    errors = [{"field": "batch", "reason": "every call was rejected; see rejected", "rule": "all_rejected"}]
    return json_response(400, {"success": False, "errors": errors, "accepted": 0, "rejected": rejected})
