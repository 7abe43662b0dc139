"""From an SDK's call to a raw event: validate, correct the clock, stamp what only the edge knows.

Pure functions, no I/O: the collector's rules can be tested without a server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.bad_rows import Problem
from schemas.events import RawEvent
from schemas.tracking import CALL_TYPES, MAX_EVENT_BYTES, TrackingCall

MAX_NESTING_DEPTH = 16
MAX_STRING_LENGTH = 8_192
# Client clocks drift; an event further ahead of the collector's clock than this is clamped and flagged.
FUTURE_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class Edge:
    """What the collector knows about the request an event came in."""

    source_id: str
    received_at: datetime
    ip: str | None
    user_agent: str | None


class Rejected(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


def _problems_from(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "event"
        message = str(item["msg"]).removeprefix("Value error, ")
        if ": " in message and not item["loc"]:
            field, message = message.split(": ", 1)  # model-level rules name their field themselves
        problems.append(Problem(field=field, reason=message))
    return problems


def _check_shape(value: Any, path: str, depth: int) -> Problem | None:
    """Bound nesting depth and string length, so one event cannot make downstream stages suffer."""
    if depth > MAX_NESTING_DEPTH:
        return Problem(field=path, reason=f"nested deeper than {MAX_NESTING_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return Problem(field=path, reason=f"string longer than {MAX_STRING_LENGTH} characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_STRING_LENGTH:
                return Problem(field=path, reason=f"key longer than {MAX_STRING_LENGTH} characters")
            if problem := _check_shape(item, f"{path}.{key}", depth + 1):
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if problem := _check_shape(item, f"{path}[{index}]", depth + 1):
                return problem
    return None


def event_time(call: TrackingCall, received_at: datetime) -> tuple[datetime, list[str]]:
    """Event time corrected for the client's clock: receivedAt − (sentAt − originalTimestamp).

    sentAt and the call's own time come from the same clock, so their difference is trustworthy even
    when the clock itself is wrong. Times still far in the future are clamped to receivedAt and flagged.
    """
    client_time = call.originalTimestamp or call.timestamp
    if client_time is None:
        return received_at, []
    if call.sentAt is not None:
        try:
            corrected = received_at - (call.sentAt - client_time)
        except OverflowError:
            return received_at, ["timestamp_out_of_range"]
    else:
        corrected = client_time
    if corrected > received_at + FUTURE_TOLERANCE:
        return received_at, ["future_timestamp_clamped"]
    return corrected, []


def normalize(item: Any, edge: Edge, inherited_context: dict[str, Any] | None = None) -> RawEvent:
    """Validate one call and turn it into the raw event the collector writes to Kafka."""
    if not isinstance(item, dict):
        raise Rejected([Problem(field="event", reason=f"expected a JSON object, got {type(item).__name__}")])
    if "type" not in item:
        raise Rejected([Problem(field="type", reason=f"required; one of {', '.join(CALL_TYPES)}")])
    if len(orjson.dumps(item)) > MAX_EVENT_BYTES:
        raise Rejected([Problem(field="event", reason=f"larger than {MAX_EVENT_BYTES} bytes")])
    for name in ("properties", "traits", "context"):
        if problem := _check_shape(item.get(name), name, 1):
            raise Rejected([problem])
    try:
        call = TrackingCall.model_validate(item)
    except ValidationError as exc:
        raise Rejected(_problems_from(exc)) from exc

    context = {**(inherited_context or {}), **call.context}
    timestamp, flags = event_time(call, edge.received_at)
    user_agent = context.get("userAgent") if isinstance(context.get("userAgent"), str) else edge.user_agent
    return RawEvent(
        message_id=call.messageId or str(uuid.uuid4()),
        type=call.type,
        event=call.event if call.type == "track" else call.name,
        anonymous_id=call.anonymousId,
        user_id=call.userId,
        previous_id=call.previousId,
        group_id=call.groupId,
        timestamp=timestamp,
        received_at=edge.received_at,
        sent_at=call.sentAt,
        original_timestamp=call.originalTimestamp or call.timestamp,
        properties=call.properties,
        traits=call.traits or (context.get("traits") if isinstance(context.get("traits"), dict) else {}),
        context=context,
        source_id=edge.source_id,
        ip=edge.ip,
        user_agent=user_agent,
        flags=flags,
    )
