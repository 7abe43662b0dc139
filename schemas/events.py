"""Events as they travel between stages: raw (collector → processors) and enriched (processors → projections)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.identity import is_illegal_id


class RawEvent(BaseModel):
    """An accepted call, normalised by the collector. Once acknowledged it is the source of truth."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    type: str
    event: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    timestamp: datetime  # event time, corrected for client clock skew
    received_at: datetime  # collector clock
    sent_at: datetime | None = None
    original_timestamp: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    source_id: str
    ip: str | None = None
    user_agent: str | None = None
    flags: list[str] = Field(default_factory=list)  # e.g. "future_timestamp_clamped"

    @property
    def device_key(self) -> str:
        return self.anonymous_id or self.user_id or self.previous_id or ""

    @property
    def distinct_id(self) -> str:
        """The id a person is looked up by: the user id once known, the device otherwise. A placeholder
        user id ("undefined", "null", ...) is no id: such an event stays with its device."""
        if self.user_id and not is_illegal_id(self.user_id):
            return self.user_id
        return self.anonymous_id or self.user_id or ""


class EnrichedEvent(RawEvent):
    """A raw event after the stream processors: which session and which person it belongs to."""

    session_id: str | None = None
    session_seq: int | None = None
    person_id: str | None = None
