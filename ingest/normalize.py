"""From an SDK's call to a raw event: validate, correct the clock, stamp what only the edge knows.

Pure functions, no I/O: the collector's rules can be tested without a server. This is the per-event
hot path, so the raw event is written with orjson straight from the validated call (its JSON is
`schemas.events.RawEvent`'s, checked by the unit tests) instead of building and dumping a model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from ingest.privacy import mask_record
from schemas.bad_rows import Problem
from schemas.identity import is_illegal_id
from schemas.tracking import (
    FLOAT_ID,
    MAX_EVENT_BYTES,
    MAX_NESTING_DEPTH,
    MAX_STRING_LENGTH,
    BatchEnvelope,
    TrackingCall,
    shape_problem,
)

# Client clocks drift; an event further ahead of the collector's clock than this is clamped and flagged.
FUTURE_TOLERANCE = timedelta(minutes=1)
PLACEHOLDER_ANONYMOUS_ID = "placeholder_anonymous_id"  # the flag of an event whose anonymousId was dropped
PLACEHOLDER = "a placeholder, not an id"
NOTHING_INHERITED = BatchEnvelope(batch=[])


@dataclass(frozen=True, slots=True)
class Edge:
    """What the collector knows about the request an event came in."""

    source_id: str
    received_at: datetime
    ip: str | None
    user_agent: str | None
    hash_emails: bool = False  # the source's: see ingest.privacy
    geo: dict[str, str] | None = None  # where the full client address is (ingest.geo), before any truncation


class Normalized(NamedTuple):
    """An accepted call, ready for the raw topic."""

    device_key: str
    type: str
    value: bytes


class Rejected(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


@dataclass
class Normalization:
    """The outcome for all calls of one request: what goes to Kafka and what the SDK is told."""

    accepted: list[Normalized] = field(default_factory=list)
    rejected: list[tuple[int, Any, list[Problem]]] = field(default_factory=list)  # (index, call, problems)

    def device_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.accepted:
            counts[event.device_key] = counts.get(event.device_key, 0) + 1
        return counts


def problems_from(error: ValidationError) -> list[Problem]:
    """Pydantic's errors as problems that name their field (model-level rules name theirs in the message)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        field_name = ".".join(str(part) for part in item["loc"]) or "event"
        message = str(item["msg"]).removeprefix("Value error, ")
        if ": " in message and not item["loc"]:
            field_name, message = message.split(": ", 1)
        problems.append(Problem(field=field_name, reason=message, rule=rule_of(item["type"], message)))
    return problems


def rule_of(error_type: str, message: str) -> str:
    """pydantic's error type is the rule, but for our own model-level checks (all `value_error`)."""
    if error_type != "value_error":
        return error_type
    if message == FLOAT_ID:
        return "integer_id"
    return "required" if "required" in message else error_type


def event_time(client_time: datetime | None, sent_at: datetime | None, received_at: datetime) -> tuple[datetime, list[str]]:
    """Event time corrected for the client's clock: receivedAt − (sentAt − originalTimestamp).

    sentAt and the call's own time come from the same clock, so their difference is trustworthy even
    when the clock itself is wrong. Times still far in the future are clamped to receivedAt and flagged.
    """
    if client_time is None:
        return received_at, []
    if sent_at is None:
        corrected = client_time
    else:
        try:
            corrected = received_at - (sent_at - client_time)
        except OverflowError:
            return received_at, ["timestamp_out_of_range"]
    if corrected > received_at + FUTURE_TOLERANCE:
        return received_at, ["future_timestamp_clamped"]
    return corrected, []


def anonymous_id_of(call: TrackingCall) -> tuple[str | None, str | None]:
    """The anonymousId to write, and the flag to add (None: none). A placeholder ("undefined", "null",
    "anonymous", ...: schemas.identity.ILLEGAL_IDS) is no device: keyed by it, every such client would share
    one partition, one rate-limit bucket and one session. It is dropped (written nowhere, the event flagged)
    and the event keyed by its userId; when the userId is missing or a placeholder too, the call is refused
    naming each placeholder. An empty anonymousId is simply absent."""
    anonymous_id = call.anonymousId
    if anonymous_id and not is_illegal_id(anonymous_id):
        return anonymous_id, None  # the usual case
    if call.userId and not is_illegal_id(call.userId):
        return None, PLACEHOLDER_ANONYMOUS_ID if anonymous_id else None
    sent = (("anonymousId", anonymous_id), ("userId", call.userId))
    raise Rejected(
        [Problem(field=name, reason=PLACEHOLDER, rule="placeholder_id") for name, value in sent if value and is_illegal_id(value)]
        or [Problem(field="userId or anonymousId", reason="one of them is required", rule="required")]
    )


def bounds_problem(value: bytes, record: dict[str, Any]) -> Problem | None:
    """Bound the written event's size, nesting depth and string lengths, so no event makes later stages suffer.

    Walking every value is the slow part, and most events cannot break the bounds: a string longer than
    MAX_STRING_LENGTH needs that many bytes, and nesting deeper than MAX_NESTING_DEPTH needs more opening
    brackets than that in the whole record (the record itself is one level). Only other events are walked.
    """
    if len(value) > MAX_EVENT_BYTES:
        return Problem(field="event", reason=f"{len(value)} bytes as written; the limit is {MAX_EVENT_BYTES}", rule="event_too_large")
    if len(value) <= MAX_STRING_LENGTH and value.count(b"{") + value.count(b"[") <= MAX_NESTING_DEPTH + 1:
        return None
    return shape_of(record)


def shape_of(record: dict[str, Any]) -> Problem | None:
    for name in ("properties", "traits", "context"):
        if found := shape_problem(record[name], name):
            return Problem(field=found[0], rule=found[1], reason=found[2])
    return None


def normalize(item: Any, edge: Edge, inherited: BatchEnvelope = NOTHING_INHERITED) -> Normalized:
    """Validate one call and turn it into the raw event the collector writes to Kafka."""
    if not isinstance(item, dict):
        raise Rejected([Problem(field="event", reason=f"expected a JSON object, got {type(item).__name__}", rule="object_type")])
    try:
        call = TrackingCall.model_validate(item)
    except ValidationError as exc:
        raise Rejected(problems_from(exc)) from exc

    anonymous_id, id_flag = anonymous_id_of(call)
    context = {**inherited.context, **call.context} if inherited.context else call.context
    if edge.geo:
        context = {**context, "geo": edge.geo}  # the collector's lookup wins over a client's context.geo
    sent_at = call.sentAt or inherited.sentAt
    timestamp, flags = event_time(call.client_time, sent_at, edge.received_at)
    if id_flag:
        flags.append(id_flag)  # event_time's list is new each time
    user_agent = context.get("userAgent")
    traits = call.traits or context.get("traits")
    record = {
        "message_id": call.messageId or str(uuid.uuid4()),
        "type": call.type,
        "event": call.event if call.type == "track" else call.name,
        "anonymous_id": anonymous_id,
        "user_id": call.userId,
        "previous_id": call.previousId,
        "group_id": call.groupId,
        "timestamp": timestamp,
        "received_at": edge.received_at,
        "sent_at": sent_at,
        "original_timestamp": call.client_time,
        "properties": call.properties,
        "traits": traits if isinstance(traits, dict) else {},
        "context": context,
        "source_id": edge.source_id,
        "ip": edge.ip,
        "user_agent": user_agent if isinstance(user_agent, str) else edge.user_agent,
        "flags": flags,
    }
    if edge.hash_emails:
        record = mask_record(record)
    value = encode(record)
    if problem := bounds_problem(value, record):
        raise Rejected([problem])
    # The device: per-device ordering is what sessionization needs (after masking: a key is never an address).
    return Normalized(record["anonymous_id"] or record["user_id"], call.type, value)


def encode(record: dict[str, Any]) -> bytes:
    """The record's JSON; orjson refuses nesting past 255 levels, which the shape rules name precisely."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError as exc:
        problem = shape_of(record) or Problem(field="event", reason=f"cannot be written as JSON: {exc}", rule="unencodable")
        raise Rejected([problem]) from exc


def normalize_all(calls: list[Any], edge: Edge, inherited: BatchEnvelope = NOTHING_INHERITED) -> Normalization:
    """Each call on its own: in a batch, valid calls are accepted and invalid ones rejected one by one."""
    outcome = Normalization()
    for index, call in enumerate(calls):
        try:
            outcome.accepted.append(normalize(call, edge, inherited))
        except Rejected as refusal:
            outcome.rejected.append((index, call, refusal.problems))
    return outcome
