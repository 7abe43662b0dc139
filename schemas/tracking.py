"""What tracking SDKs send: the Segment HTTP Tracking API (track, identify, page, screen, group, alias).

The model accepts payloads from Segment's and RudderStack's libraries unchanged. Validation errors
name the field, so the collector can answer "userId: ..." instead of a bare 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CallType = Literal["track", "identify", "page", "screen", "group", "alias"]
CALL_TYPES: tuple[str, ...] = ("track", "identify", "page", "screen", "group", "alias")

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2_500
MAX_ID_LENGTH = 100
MAX_NAME_LENGTH = 1_000


def _coerce_id(value: Any) -> Any:
    """SDKs send numeric user ids; keep them as strings so `42` and `"42"` are one user."""
    if isinstance(value, bool):
        return value  # rejected by the str type with a clear message
    if isinstance(value, int):
        return str(value)
    return value


class TrackingCall(BaseModel):
    """One call as an SDK sends it (camelCase on the wire)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, populate_by_name=True)

    type: CallType
    messageId: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    anonymousId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    userId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    previousId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    groupId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    event: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    category: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None

    @field_validator("anonymousId", "userId", "previousId", "groupId", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        return _coerce_id(value)

    @field_validator("timestamp", "originalTimestamp", "sentAt")
    @classmethod
    def _timestamps_have_a_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp needs a time zone, e.g. 2026-01-31T12:00:00Z")
        return value

    @model_validator(mode="after")
    def _rules_of_each_type(self) -> TrackingCall:
        if self.type == "alias":
            if not self.previousId:
                raise ValueError("previousId: required for alias")
            if not self.userId:
                raise ValueError("userId: required for alias")
        elif not (self.userId or self.anonymousId):
            raise ValueError("userId or anonymousId: one of them is required")
        if self.type == "track" and not self.event:
            raise ValueError("event: required for track")
        if self.type == "group" and not self.groupId:
            raise ValueError("groupId: required for group")
        return self

    @property
    def device_key(self) -> str:
        """The Kafka key: per-device ordering is what sessionization needs."""
        return self.anonymousId or self.userId or self.previousId or ""
