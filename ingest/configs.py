"""Serving dynamic configs: `POST /v1/configs` (and a GET form), read top to bottom as small steps:
write key → request (ids, properties, keys) → the subject (person and stored properties from this worker's
copy, the request's properties on top) → evaluate every config (schemas.configs.serve) → record the new
exposures as `$config_served` events on the raw topic → answer.

Each worker holds what serving needs in memory and keeps it current from Kafka (`ConfigState` fed by a
`schemas.tail.TopicTail`): the `configs` topic (every version), the compacted `identities` topic
(distinct id → person), the compacted `person-properties` topic (person → properties, tags, lists, stage,
status, identity facts) and the compacted `person-segments` topic (person → the segments it is in). No
ClickHouse query is on the request path.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from cachetools import TTLCache
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ingest.edge import edge_of
from ingest.normalize import NOTHING_INHERITED, normalize_all, problems_from
from ingest.responses import Refusal, json_response
from ingest.tracking import TrackingAPI, events_of
from schemas.bad_rows import Problem
from schemas.conditions import CONTACT, IDENTIFIED, SEGMENTS
from schemas.configs import EXPOSURE_EVENT, ConfigRegistry, ConfigRequest, ConfigVersion, Served, Subject, serve
from schemas.identity import DistinctIdMapping
from schemas.person_properties import PersonProperties
from schemas.person_segments import PersonSegments
from schemas.topics import Topics

log = logging.getLogger(__name__)

CONFIG_REQUESTS = Counter("footfall_collector_config_requests_total", "Config requests answered, by outcome", ["outcome"])
EXPOSURES = Counter("footfall_collector_config_exposures_total", "$config_served events written (after the window's collapse)")
EVALUATION_SECONDS = Histogram(
    "footfall_collector_config_evaluation_seconds",
    "Time to evaluate every requested config for one request (no I/O)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)


class ConfigState:
    """What one worker knows to serve configs. The tail's thread writes, the event loop reads: every
    update is a single assignment (the live configs are a new tuple each time), so a reader never sees
    half a change."""

    def __init__(self, topics: Topics):
        self.registry = ConfigRegistry()
        self.live: tuple[ConfigVersion, ...] = ()
        self.person_of: dict[str, tuple[str, int]] = {}  # distinct id → (person id, mapping version)
        self.properties_of: dict[str, tuple[dict[str, Any], int]] = {}  # person id → (properties, version)
        self.segments_of: dict[str, tuple[list[str], int]] = {}  # person id → (segment ids, version)
        self.handlers = {
            topics.configs.name: self._on_config,
            topics.identities.name: self._on_mapping,
            topics.person_properties.name: self._on_properties,
            topics.person_segments.name: self._on_segments,
        }

    def on_record(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.handlers[topic](key, value)

    def _on_config(self, _key: bytes | None, value: bytes | None) -> None:
        if value is not None and self.registry.apply(ConfigVersion.model_validate_json(value)):
            self.live = tuple(self.registry.live())

    def _on_mapping(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.person_of.pop(key.decode(), None)
            return
        mapping = DistinctIdMapping.model_validate_json(value)
        current = self.person_of.get(mapping.distinct_id)
        if current is None or current[1] <= mapping.version:
            if mapping.is_deleted:
                self.person_of.pop(mapping.distinct_id, None)
            else:
                self.person_of[mapping.distinct_id] = (mapping.person_id, mapping.version)

    def _on_properties(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # the person was merged away or deleted
            if key is not None:
                self.properties_of.pop(key.decode(), None)
            return
        person = PersonProperties.model_validate_json(value)
        current = self.properties_of.get(person.person_id)
        if current is None or current[1] <= person.version:
            self.properties_of[person.person_id] = (person.properties, person.version)

    def _on_segments(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # the person is in no segment now
            if key is not None:
                self.segments_of.pop(key.decode(), None)
            return
        person = PersonSegments.model_validate_json(value)
        current = self.segments_of.get(person.person_id)
        if current is None or current[1] <= person.version:
            self.segments_of[person.person_id] = (person.segments, person.version)

    def subject(self, anonymous_id: str | None, user_id: str | None, sent: Mapping[str, Any]) -> Subject:
        """The person the ids resolve to (the user id's first); its stored properties and facts, its segments, and
        what the request says on top (a userId makes the subject identified, a contact, even before its profile
        says so); the sent properties last."""
        found = (user_id and self.person_of.get(user_id)) or (anonymous_id and self.person_of.get(anonymous_id))
        person_id = found[0] if found else None
        stored = self.properties_of.get(person_id, ({}, 0))[0] if person_id else {}
        segments = self.segments_of.get(person_id) if person_id else None
        if not (segments or user_id or sent):
            return Subject(anonymous_id, user_id, person_id, stored)
        facts = {**stored, **({SEGMENTS: segments[0]} if segments else {}), **({IDENTIFIED: True, CONTACT: True} if user_id else {})}
        return Subject(anonymous_id, user_id, person_id, {**facts, **sent})

    def configs(self, keys: list[str] | None) -> tuple[ConfigVersion, ...]:
        if keys is None:
            return self.live
        wanted = set(keys)
        return tuple(c for c in self.live if c.key in wanted)


class ExposureWindow:
    """Which (person, config, variant, version) this worker recorded within the window: a repeat is not
    written again until the window has passed. One cache entry per person (the per-request lookup), holding
    when each of their exposures was recorded. Per worker, so N workers record at most N copies per window."""

    def __init__(self, window_s: float, max_people: int = 1_000_000):
        self.window_s = window_s
        self.people: TTLCache = TTLCache(maxsize=max_people, ttl=window_s, timer=time.monotonic)

    def new(self, person: str, served: list[Served]) -> list[Served]:
        """The exposures not recorded within the window; they count as recorded from now on."""
        now = time.monotonic()
        recorded: dict[tuple[str, str, int], float] = self.people.get(person) or {}
        fresh = []
        for item in served:
            mark = (item.key, item.variant, item.version)
            at = recorded.get(mark)
            if at is None or now - at >= self.window_s:
                recorded[mark] = now
                fresh.append(item)
        if fresh:
            self.people[person] = recorded  # (re)starts the entry's time to live with its newest mark
        return fresh

    def forget(self, person: str, served: list[Served]) -> None:
        """Writing them failed: the next request records them again."""
        recorded = self.people.get(person) or {}
        for item in served:
            recorded.pop((item.key, item.variant, item.version), None)


class ConfigServing:
    def __init__(self, tracking: TrackingAPI, state: ConfigState, exposure_window_s: float):
        self.tracking = tracking
        self.state = state
        self.exposures = ExposureWindow(exposure_window_s)
        self.loaded = None  # the tail's `ready` event, set by the app's lifespan

    async def post(self, request: Request) -> Response:
        try:
            known = self.tracking.check_key_before_body(request)
            body = await self.tracking.read_body(request, known)
            return await self.answer(request, body)
        except Refusal as refusal:
            CONFIG_REQUESTS.labels(f"refused_{refusal.status}").inc()
            return refusal.response()

    async def get(self, request: Request) -> Response:
        """GET /v1/configs?anonymousId=…&userId=…&keys=a,b&properties=<JSON object>&writeKey=…"""
        query = request.query_params
        body: dict[str, Any] = {name: query[name] for name in ("anonymousId", "userId") if name in query}
        if keys := query.get("keys"):
            body["keys"] = [k.strip() for k in keys.split(",") if k.strip()]
        try:
            if "properties" in query:
                body["properties"] = orjson.loads(query["properties"])
            return await self.answer(request, body)
        except orjson.JSONDecodeError:
            return Refusal.of(400, "properties", "object_type", "must be a JSON object").response()
        except Refusal as refusal:
            CONFIG_REQUESTS.labels(f"refused_{refusal.status}").inc()
            return refusal.response()

    async def answer(self, request: Request, body: Any) -> Response:
        source = self.tracking.authenticate(request, body)
        origin = request.headers.get("origin")
        if not source.allows_origin(origin):  # a read, not an event: nothing to keep as a bad row
            raise Refusal(403, [Problem(field="origin", reason=f"{origin} may not ask this source's configs", rule="origin_not_allowed")])
        if self.loaded is None or not self.loaded.is_set():
            raise Refusal.of(503, "configs", "loading", "this worker is still loading the configs; retry", self.tracking.retry_after)
        ask = parse_request(body)
        started = time.perf_counter()
        subject = self.state.subject(ask.anonymousId, ask.userId, ask.properties)
        now = datetime.now(UTC)
        served = [serve(config, subject, now) for config in self.state.configs(ask.keys)]
        EVALUATION_SECONDS.observe(time.perf_counter() - started)
        await self.record(request, source, subject, served)
        CONFIG_REQUESTS.labels("served").inc()
        return json_response(
            200, {"configs": {s.key: s.answer() for s in served}, "person_id": subject.person_id}, {"Cache-Control": "no-store"}
        )

    async def record(self, request: Request, source, subject: Subject, served: list[Served]) -> None:
        """Write each exposure new within the window as a `$config_served` track call of this subject,
        through the same normalisation as any call (the source's privacy rules apply). Serving does not
        fail when Kafka does: the exposures are forgotten, so the next request writes them."""
        person = subject.person_id or subject.user_id or subject.anonymous_id or ""
        fresh = self.exposures.new(person, served)
        if not fresh:
            return
        edge = await edge_of(request, source)
        calls = [exposure_call(subject, item) for item in fresh]
        outcome = normalize_all(calls, edge, NOTHING_INHERITED)
        self.tracking.drop_erased(outcome, edge)  # an erased user's exposures are not written, not even as bad rows
        try:
            await self.tracking.deliver(self.tracking.bad_rows_of(outcome, edge), events_of(outcome))
        except Refusal as exc:
            log.debug("exposures not recorded (%s); the next request retries them", exc)
            self.exposures.forget(person, fresh)
            return
        EXPOSURES.inc(len(outcome.accepted))


def parse_request(body: Any) -> ConfigRequest:
    if not isinstance(body, dict):
        raise Refusal.of(400, "body", "object_type", "must be a JSON object with anonymousId and/or userId")
    try:
        return ConfigRequest.model_validate(body)
    except ValidationError as exc:
        raise Refusal(400, problems_from(exc)) from exc


def exposure_call(subject: Subject, served: Served) -> dict[str, Any]:
    return {
        "type": "track",
        "event": EXPOSURE_EVENT,
        "messageId": str(uuid.uuid4()),
        "anonymousId": subject.anonymous_id,
        "userId": subject.user_id,
        "properties": {
            "config_key": served.key,
            "variant": served.variant,
            "version": served.version,
            "reason": served.reason,
            "rule": served.rule,
        },
        "context": {"library": {"name": "footfall-collector", "version": "configs"}},
    }
