"""Bad rows: input that a stage refused, kept with its reason on the dead-letter topic (as Snowplow does).

A bad row is data, not a log line: it carries the original payload so it can be fixed and replayed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Stage = Literal["collector", "processor", "projector"]


class Problem(BaseModel):
    """One reason a payload was refused: which field, and why."""

    model_config = ConfigDict(frozen=True)

    field: str
    reason: str


class BadRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    problems: list[Problem]
    source_id: str | None
    received_at: datetime
    payload: str  # the refused input, as text (bytes that are not UTF-8 are escaped)
    index: int | None = None  # position in a batch request


def stream_bad_row(stage: Stage, payload: bytes | None, field: str, reason: str) -> bytes:
    """A message a consumer could not read, as the dead-letter topic's value (undecodable bytes escaped)."""
    return BadRow(
        stage=stage,
        problems=[Problem(field=field, reason=reason)],
        source_id=None,
        received_at=datetime.now(UTC),
        payload=(payload or b"").decode("utf-8", "backslashreplace"),
    ).model_dump_json().encode()
