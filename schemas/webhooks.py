"""Webhooks: subscriptions to the outbound stream (profile-changes), what each delivery attempt recorded, and the
signature a receiver checks. Pure: no I/O.

Definitions live on the compacted `<prefix>.webhooks` topic (key: the webhook id), followed whole by every API
process and by the dispatcher (`footfall webhooks`). Each attempt to deliver a change is a record on
`<prefix>.webhook-deliveries` (key: the webhook id), which the projector writes to `webhook_deliveries`; the
last failed try is recorded `dead_lettered` and carries the change itself, so it can be sent again.

A delivery is a POST of the change as JSON (`ProfileChange`), with:
- `X-Footfall-Signature: sha256=<hex>`: HMAC-SHA256 of the raw body under the webhook's secret;
- `X-Footfall-Timestamp`: when this attempt was sent (Unix seconds), for receivers that refuse old messages;
- `Idempotency-Key` (and `X-Footfall-Change-Id`): the change id, the same on every attempt and redelivery;
- `X-Footfall-Webhook` and `X-Footfall-Attempt`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.profile_changes import ChangeKind, ProfileChange

WEBHOOK_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
SIGNATURE_HEADER = "X-Footfall-Signature"
TIMESTAMP_HEADER = "X-Footfall-Timestamp"
CHANGE_ID_HEADER = "X-Footfall-Change-Id"
DeliveryStatus = Literal["delivered", "failed", "dead_lettered"]


class WebhookDefinition(BaseModel):
    """One subscription. A change matches when its kind is in `kinds` (empty: every kind) and, if any of
    `segments`, `stages`, `lists` is given, it concerns one of them: a segment entered or exited, a stage
    entered or left, a list joined or left."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=WEBHOOK_ID_PATTERN)
    url: str = Field(min_length=1, max_length=2048)
    secret: str = Field(min_length=16, max_length=256)
    kinds: list[ChangeKind] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)
    lists: list[str] = Field(default_factory=list)
    description: str = Field("", max_length=500)
    enabled: bool = True
    version: int = 1
    deleted: bool = False
    created_at: datetime
    updated_at: datetime


def live_webhooks(records: Iterable[WebhookDefinition]) -> dict[str, WebhookDefinition]:
    """The webhooks in force: each id's newest record, deleted ones dropped."""
    latest: dict[str, WebhookDefinition] = {}
    for record in records:
        if record.id not in latest or record.version >= latest[record.id].version:
            latest[record.id] = record
    return {webhook_id: record for webhook_id, record in latest.items() if not record.deleted}


def matches(webhook: WebhookDefinition, change: ProfileChange) -> bool:
    """Whether the webhook wants this change."""
    if not webhook.enabled or webhook.deleted:
        return False
    if webhook.kinds and change.kind not in webhook.kinds:
        return False
    if not (webhook.segments or webhook.stages or webhook.lists):
        return True
    if change.kind in ("segment_entered", "segment_exited"):
        return change.subject in webhook.segments
    if change.kind == "stage_changed":
        return bool({change.before, change.after} & set(webhook.stages))
    if change.kind in ("list_added", "list_removed"):
        return change.subject in webhook.lists
    return False


def signature(secret: str, body: bytes) -> str:
    """The value of X-Footfall-Signature for this body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the signature over the raw body and compare in constant time."""
    return hmac.compare_digest(signature(secret, body), header)


class DeliveryAttempt(BaseModel):
    """One try to deliver one change to one webhook (value of `webhook-deliveries`, keyed by webhook id)."""

    model_config = ConfigDict(frozen=True)

    webhook_id: str
    change_id: str
    person_id: str
    kind: str
    attempt: int = Field(ge=1)
    status: DeliveryStatus
    http_status: int = 0  # 0: no answer (connection refused, timeout)
    error: str = ""  # why it failed, never the body
    duration_ms: float = 0.0
    at: datetime  # when the attempt was made
    url: str = ""
    change: ProfileChange | None = None  # on dead_lettered: what was not delivered, to send again
