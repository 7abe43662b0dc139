"""Session records emitted by the sessionizer, upserted by the projector into `sessions`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SessionStatus = Literal["open", "ended", "absorbed"]


class SessionUpdate(BaseModel):
    """The whole current state of one session. Later versions replace earlier ones (upsert by session_id)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["session"] = "session"
    session_id: str
    device_key: str
    version: int  # grows with every update of this session; the projector keeps the highest
    status: SessionStatus
    absorbed_into: str | None = None  # set when status == "absorbed" (a bridging event merged it)
    start: datetime
    end: datetime
    duration_seconds: float
    event_count: int
    pageview_count: int
    bounced: bool
    entry_url: str | None = None
    exit_url: str | None = None
    referrer: str | None = None
    referring_domain: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    browser: str | None = None
    os: str | None = None
    device_type: str | None = None
    distinct_id: str | None = None  # the latest distinct id seen in the session
    person_id: str | None = None
    late_event_count: int = 0


class SessionMerge(BaseModel):
    """A bridging event joined two sessions: events stamped with `absorbed` now belong to `survivor`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["session_merge"] = "session_merge"
    absorbed_session_id: str
    survivor_session_id: str
    device_key: str
    version: int


SessionMessage = Annotated[SessionUpdate | SessionMerge, Field(discriminator="kind")]
session_message = TypeAdapter(SessionMessage)
