"""The properties of one person as a compacted topic carries them, for readers that need them without
ClickHouse on their request path (the collector's config targeting)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PersonProperties(BaseModel):
    """The person's merged properties (traits, newest wins) and the derived facts rules may test
    (`$email_domain`, `$is_identified`, `$is_contact`). Versions grow; the highest wins."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    version: int
    properties: dict[str, Any] = Field(default_factory=dict)
