"""Commands of the management API about companies: every change is a record on `<prefix>.company-commands`,
keyed by company id, applied by the projector (and again by `footfall replay`).

A company is named by its id: the `groupId` of Segment's `group` call, or the id the API was given (else a
generated one). Memberships link a company and a person (many to many): `member_add` starts one (or changes
its role and primary flag), `member_end` ends it. Each command carries its own time (`at`, the API's clock):
its writes compete with group calls' traits, stamped by their event time, per property (latest wins).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.objects import out_of_range

CompanyCommandKind = Literal["upsert", "delete", "member_add", "member_end"]
COMPANY_ID_MAX = 256


class CompanyCommand(BaseModel):
    """One change to one company or to one of its memberships.

    upsert: `set` writes properties (None removes one), `unset` removes them. delete: the company, its
    properties and memberships written until `at` disappear (a later write starts it afresh).
    member_add: `person_id` is a member from `started_at` (default `at`), with `role` and `primary` when given.
    member_end: the membership ended at `ended_at` (default `at`).
    """

    model_config = ConfigDict(frozen=True)

    @field_validator("set")
    @classmethod
    def _writable(cls, values: dict[str, Any]) -> dict[str, Any]:
        """An integer beyond 64 bits cannot be written into the fold's state: unreadable here, a bad row there."""
        if bad := [name for name, value in values.items() if out_of_range(value)]:
            raise ValueError(f"integers must fit in 64 bits: {', '.join(bad)}")
        return values

    kind: CompanyCommandKind
    command_id: str
    company_id: str = Field(min_length=1, max_length=COMPANY_ID_MAX)
    at: datetime
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    person_id: str | None = None
    role: str | None = None
    primary: bool | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
