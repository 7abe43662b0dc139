"""Events as the processors read them: orjson-decoded, not re-validated.

The collector validated and normalised every raw event before it acknowledged it (schemas.events.RawEvent), and
the processors validated every sessioned event they wrote. Building a pydantic model again per event cost more
than sessionizing it, so a processor only checks what its own work needs (the ids, the type and the event time)
and keeps the decoded fields: an output event is the input's fields with what the processor adds, serialised
once. Anything that does not pass is refused (ValueError) and dead-lettered alone by records.read_record.

`EventView` has the attributes of RawEvent that sessionizing and identity resolution read, so the pure domain
functions (sessionizer.assign, identity.commands_for, schemas.attribution) take either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from schemas.identity import is_illegal_id

_EMPTY: dict[str, Any] = {}


class EventView:
    """One decoded event: its JSON fields as sent, and typed access to what the processors use."""

    __slots__ = (
        "fields",
        "message_id",
        "type",
        "timestamp",
        "anonymous_id",
        "user_id",
        "previous_id",
        "properties",
        "traits",
        "context",
        "user_agent",
    )

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.message_id = _required_text(fields, "message_id")
        self.type = _required_text(fields, "type")
        self.timestamp = _timestamp(fields.get("timestamp"))
        self.anonymous_id = _optional_text(fields, "anonymous_id")
        self.user_id = _optional_text(fields, "user_id")
        self.previous_id = _optional_text(fields, "previous_id")
        self.properties = _optional_object(fields, "properties")
        self.traits = _optional_object(fields, "traits")
        self.context = _optional_object(fields, "context")
        self.user_agent = _optional_text(fields, "user_agent")
        if not isinstance(fields.get("source_id"), str):
            raise ValueError("source_id: a string is required")

    @property
    def device_key(self) -> str:
        return self.anonymous_id or self.user_id or self.previous_id or ""

    @property
    def distinct_id(self) -> str:
        """As RawEvent.distinct_id: the user id once known (a placeholder is no id), the device otherwise."""
        if self.user_id and not is_illegal_id(self.user_id):
            return self.user_id
        return self.anonymous_id or self.user_id or ""

    def with_fields(self, **added: Any) -> bytes:
        """This event's JSON with fields added or replaced (session, person): one serialisation per output."""
        return orjson.dumps({**self.fields, **added})


def read_event(payload: bytes) -> EventView:
    """A raw or enriched event from its JSON; ValueError (naming the field) when it cannot be one."""
    fields = orjson.loads(payload)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(fields, dict):
        raise ValueError("an event is a JSON object")
    return EventView(fields)


def json_time(moment: datetime) -> str:
    """A UTC time as pydantic writes it (…Z), so a re-sent event's time reads back equal."""
    return moment.isoformat().replace("+00:00", "Z")


def _required_text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: a non-empty string is required")
    return value


def _optional_text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: a string or null is required")
    return value


def _optional_object(fields: dict[str, Any], name: str) -> dict[str, Any]:
    value = fields.get(name)
    if value is None:
        return _EMPTY
    if not isinstance(value, dict):
        raise ValueError(f"{name}: an object is required")
    return value


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("timestamp: an ISO 8601 time is required")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("timestamp: an ISO 8601 time is required") from None
    if moment.tzinfo is None:
        raise ValueError("timestamp: a time zone is required")
    return moment
