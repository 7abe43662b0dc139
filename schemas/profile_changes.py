"""The outbound stream (`<prefix>.profile-changes`, keyed by person id): every change to a person that
automations, campaigns and webhooks act on, whichever stage decided it.

A change is identified by `change_id`, derived from what caused it (the command id, the segment evaluation
that saw the transition, ...), never from the time it was published: the same transition always carries the
same id, so a redelivery, a worker restart or a `footfall replay` that publishes it again is recognisable and
consumers keep one (the `events` table keys its `$` rows on it; webhook deliveries are unique per
subscription and change id).

The same changes appear in the person's timeline as `$` events (`event_name_of`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ChangeKind = Literal[
    "property_changed",  # subject: the property name; before/after: its values
    "tag_added",
    "tag_removed",  # subject: the tag
    "status_changed",  # before/after: active / disabled
    "stage_changed",  # subject: the new stage id; before/after: stage ids
    "list_added",
    "list_removed",  # subject: the list id
    "segment_entered",
    "segment_exited",  # subject: the segment id
    "company_joined",
    "company_left",  # subject: the company id
    "object_created",
    "object_updated",
    "object_stage_changed",
    "object_deleted",  # subject: "<type>:<object id>"; detail: {"type": ..., "stage": ...}
]
CHANGE_KINDS: tuple[str, ...] = ChangeKind.__args__  # type: ignore[attr-defined]  # ruff/mypy: Literal members


class ProfileChange(BaseModel):
    """One transition of one person. `source` says what made it: "api", "import", "rule:<stage id>",
    "segment:<id>", "collector", "object:<type>:<id>"."""

    model_config = ConfigDict(frozen=True)

    change_id: str = Field(min_length=1, max_length=200)
    person_id: str = Field(min_length=1)
    kind: ChangeKind
    at: datetime  # when the change took effect (the command's or evaluation's time), UTC
    source: str
    subject: str | None = None
    before: Any = None
    after: Any = None
    detail: dict[str, Any] = Field(default_factory=dict)


def change_id_of(*cause: object) -> str:
    """A stable id from the parts that identify a transition (e.g. "segment", segment id, person id, entry
    number): the same cause gives the same id on every run, so consumers can drop repeats."""
    joined = "\x1f".join(str(part) for part in cause)
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def event_name_of(kind: str) -> str:
    """The timeline event of a change: `$segment_entered`, `$stage_changed`, `$list_added`, ..."""
    return f"${kind}"
