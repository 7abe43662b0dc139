"""Commands of the management API: every change to a user is a record on `<prefix>.user-commands`.

The API answers a write once Kafka acknowledged its command; the projector applies the commands to the
profiles, and `footfall replay` applies them again. A command names its person by id (resolved by the API
from the `{ref}` it was given) and carries its own time (`at`, the API's clock): property writes compete
with tracking's `$set` by that time, as SCHEMA.md states.

Deletes and erasures carry SHA-256 digests of the person's identifiers, never the identifiers themselves:
the command log is kept forever, and an erased user's ids must not be in it. The digest is unkeyed, as the
collector's email hashing is, so a stage holding an id can tell whether it was deleted.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

UserStatus = Literal["active", "disabled"]
CommandKind = Literal["create", "update", "delete", "erase"]
COMMAND_NAMESPACE = uuid.UUID("5c0e8a3e-1f0b-4c55-9a52-0a6f2a4f7c11")

# The default properties of a user (issue 16): identifiers first. Anything else is a custom property.
IDENTIFIERS = ("user_id", "email", "phone", "customer_id")
DEFAULT_PROPERTIES = (*IDENTIFIERS, "first_name", "last_name", "name", "company", "city", "country", "timezone")


def id_digest(identifier: str) -> str:
    """The digest deletes, erasures and the collector's suppression list compare identifiers by."""
    return hashlib.sha256(identifier.strip().encode()).hexdigest()


def email_key(email: str) -> str:
    """An email as an identifier: trimmed and lower-cased (addresses are matched case-insensitively)."""
    return email.strip().lower()


def command_id_for(idempotency_key: str, scope: str) -> str:
    """The id of a command sent with an Idempotency-Key: the same key for the same request is the same command."""
    return str(uuid.uuid5(COMMAND_NAMESPACE, f"{scope}\x00{idempotency_key}"))


class UserCommand(BaseModel):
    """One change to one person, applied by the profile projection.

    create/update: `set` writes properties (default and custom ones alike), `unset` removes them, `status`
    sets active/disabled, `tags_add`/`tags_remove` edit the tag set; each write competes by `at`. `stage`
    and `lists_add`/`lists_remove` are kept as writes and walked in stamp order (schemas/stages.py, lists.py).
    delete: the person and every row of theirs that was received until `at` disappear; later tracking with
    the same ids starts a fresh person. erase: a delete that also drops every later event of those ids.
    """

    model_config = ConfigDict(frozen=True)

    kind: CommandKind
    command_id: str
    person_id: str
    at: datetime
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    status: UserStatus | None = None
    tags_add: list[str] = Field(default_factory=list)
    tags_remove: list[str] = Field(default_factory=list)
    id_digests: list[str] = Field(default_factory=list)  # delete, erase: id_digest of every identifier
    # Lifecycle stage (schemas/stages.py): the stage set, by what ("api", "import", "rule:<stage id>"), why;
    # a rule's write names the stage it moves the person from (applied only if the person is still there).
    stage: str | None = None
    stage_by: str | None = None
    stage_reason: str = ""
    stage_from: str | None = None
    # Static lists (schemas/lists.py): list ids added and removed, and who did it.
    lists_add: list[str] = Field(default_factory=list)
    lists_remove: list[str] = Field(default_factory=list)
    lists_by: str = ""
    job_id: str | None = None  # set when a bulk edit made this command
    by: str = ""  # what made it ("api", "import"; "" in commands older than the field: the API), the source of its profile changes


class Erasure(BaseModel):
    """One suppressed identifier (value of the compacted `erasures` topic, keyed by `id_digest`).

    The collector drops tracking calls whose ids are erased, and the projector drops their events, replay
    included. Only digests are kept: the record doubles as the audit trail of the erasure."""

    model_config = ConfigDict(frozen=True)

    id_digest: str
    erasure_id: str  # the erase command's id: every digest of one erasure shares it
    person_id: str
    erased_at: datetime
