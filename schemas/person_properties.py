"""The properties of one person as a compacted topic carries them, for readers that need them without
ClickHouse on their request path (the collector's config targeting)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.conditions import SEGMENTS

# The persons columns carried as `$<column>` beside the traits: what config targeting may test besides the
# properties themselves (the projector writes them; the API shows the same facts when it previews). `tags`,
# `lists`, `stage`, `status`, `is_identified` and `is_contact` are also what the tag, list, stage, status and
# identity conditions read (schemas/conditions.py); segment membership comes from person-segments.
DERIVED_FOR_TARGETING = (
    "visitor_number", "is_identified", "is_contact", "email_domain", "is_free_email", "company_domain",
    "initial_referring_domain", "initial_utm_source", "initial_utm_medium", "initial_utm_campaign",
    "last_browser", "last_os", "last_device_type", "status", "tags", "lists", "stage",
)  # fmt: skip


def targeting_properties(properties: dict[str, Any], columns: dict[str, Any], segments: Iterable[str] | None = None) -> dict[str, Any]:
    """A person's properties as rules see them: the traits, the derived columns as `$<column>` and, when
    given, the segments the person is in as `$segments`."""
    found = {**properties, **{f"${name}": _plain(columns[name]) for name in DERIVED_FOR_TARGETING if name in columns}}
    if segments is not None:
        found[SEGMENTS] = sorted(segments)
    return found


def _plain(value: Any) -> Any:
    """Array columns as JSON lists (ClickHouse may hand back tuples)."""
    return list(value) if isinstance(value, tuple) else value


class PersonProperties(BaseModel):
    """The person's merged properties (traits, newest wins) and the derived facts rules may test
    (`$email_domain`, `$is_identified`, `$is_contact`). Versions grow; the highest wins."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    version: int
    properties: dict[str, Any] = Field(default_factory=dict)
