"""The properties of one person as a compacted topic carries them, for readers that need them without
ClickHouse on their request path (the collector's config targeting)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The persons columns carried as `$<column>` beside the traits: what config targeting may test besides the
# properties themselves (the projector writes them; the API shows the same facts when it previews).
DERIVED_FOR_TARGETING = (
    "visitor_number", "is_identified", "is_contact", "email_domain", "is_free_email", "company_domain",
    "initial_referring_domain", "initial_utm_source", "initial_utm_medium", "initial_utm_campaign",
    "last_browser", "last_os", "last_device_type", "status",
)  # fmt: skip


def targeting_properties(properties: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    """A person's properties as rules see them: the traits, and the derived columns as `$<column>`."""
    return {**properties, **{f"${name}": columns[name] for name in DERIVED_FOR_TARGETING if name in columns}}


class PersonProperties(BaseModel):
    """The person's merged properties (traits, newest wins) and the derived facts rules may test
    (`$email_domain`, `$is_identified`, `$is_contact`). Versions grow; the highest wins."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    version: int
    properties: dict[str, Any] = Field(default_factory=dict)
