"""/api/v1/webhooks: subscriptions to the outbound stream, and what their deliveries did.

A webhook's definition is a version on the compacted `webhooks` topic (key: its id), followed in memory by
every API process (api/catalog.py) and by the dispatcher (`footfall webhooks`, outbound/webhooks.py). The
secret is given (or generated) at creation and answered only then: reads show its last four characters.
Delivery attempts are read from `webhook_deliveries` (the dispatcher's records, written by the projector).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.bodies import StrictJSONRoute
from api.catalog import Catalog
from api.errors import ApiError
from schemas.profile_changes import ChangeKind
from schemas.webhooks import WEBHOOK_ID_PATTERN, WebhookDefinition, live_webhooks

router = APIRouter(tags=["webhooks"], route_class=StrictJSONRoute)
Ids = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)]


class Webhooks(Catalog[WebhookDefinition]):
    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, WebhookDefinition.model_validate_json, "webhooks")

    async def live(self) -> dict[str, WebhookDefinition]:
        await self.ready()
        return live_webhooks(self.records.values())


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


class WebhookFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048, description="where changes are POSTed (http or https)")
    kinds: list[ChangeKind] | None = Field(None, description="change kinds to deliver; empty: every kind")
    segments: Ids | None = Field(None, description="only changes of these segments (entered, exited)")
    stages: Ids | None = Field(None, description="only stage changes into or out of these stages")
    lists: Ids | None = Field(None, description="only these lists' adds and removes")
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(None, description="false: changes are skipped (not kept) until enabled again")
    secret: str | None = Field(None, min_length=16, max_length=256, description="the HMAC-SHA256 key; default: a new random one")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _check_url(url)


class WebhookCreate(WebhookFields):
    url: str = Field(max_length=2048, description="where changes are POSTed (http or https)")  # type: ignore[assignment]  # required here
    id: str | None = Field(None, pattern=WEBHOOK_ID_PATTERN, description="default: a new UUID")


def _webhooks(request: Request) -> Webhooks:
    return request.app.state.webhooks


def as_json(webhook: WebhookDefinition, secret: bool = False) -> dict[str, Any]:
    """A webhook as the API answers it: the secret only when it was just set, else its last four characters."""
    found = webhook.model_dump(mode="json", exclude={"deleted", "secret"})
    found["secret_hint"] = "…" + webhook.secret[-4:]
    if secret:
        found["secret"] = webhook.secret
    return found


async def _live(request: Request, webhook_id: str) -> WebhookDefinition:
    found = (await _webhooks(request).live()).get(webhook_id)
    if found is None:
        raise ApiError.of(404, "id", "exists", f"no webhook {webhook_id!r}")
    return found


async def _publish(request: Request, definition: WebhookDefinition) -> None:
    def applied(found: WebhookDefinition | None) -> bool:
        return found is not None and found.version >= definition.version

    await _webhooks(request).publish(request.app.state.bus, [(definition.id, definition.model_dump_json().encode(), applied)])


@router.get("/webhooks")
async def list_webhooks(request: Request) -> dict[str, Any]:
    """Every webhook (secrets shown by their last four characters)."""
    live = sorted((await _webhooks(request).live()).values(), key=lambda w: (w.created_at, w.id))
    return {"webhooks": [as_json(w) for w in live]}


@router.post("/webhooks", status_code=201)
async def create_webhook(request: Request, body: WebhookCreate) -> ORJSONResponse:
    """Subscribe a URL to changes; the answer is the only one that shows the secret."""
    await _webhooks(request).ready()
    webhook_id = body.id or str(uuid.uuid4())
    previous = _webhooks(request).records.get(webhook_id)
    if previous is not None:  # a deleted one's id too: its consumer group's position must not be picked up again
        state = "was deleted; ids are not reused" if previous.deleted else "exists already"
        raise ApiError.of(409, "id", "unique", f"webhook {webhook_id!r} {state}")
    now = datetime.now(UTC)
    fields = body.model_dump(exclude_none=True, exclude={"id"})
    definition = WebhookDefinition(
        id=webhook_id,
        secret=body.secret or secrets.token_hex(32),
        version=1,
        created_at=now,
        updated_at=now,
        **{key: value for key, value in fields.items() if key != "secret"},
    )
    await _publish(request, definition)
    return ORJSONResponse(as_json(definition, secret=True), 201)


@router.get("/webhooks/{webhook_id}")
async def get_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    return as_json(await _live(request, webhook_id))


@router.patch("/webhooks/{webhook_id}")
async def update_webhook(request: Request, webhook_id: str, body: WebhookFields) -> dict[str, Any]:
    """Change some fields (a new secret is answered this once)."""
    current = await _live(request, webhook_id)
    changes = body.model_dump(exclude_none=True)
    updated = current.model_copy(update={**changes, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, updated)
    return as_json(updated, secret="secret" in changes)


@router.delete("/webhooks/{webhook_id}")
async def delete_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    """Stop delivering; past deliveries stay readable."""
    current = await _live(request, webhook_id)
    gone = current.model_copy(update={"deleted": True, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, gone)
    return {"id": webhook_id, "deleted": True, "version": gone.version}


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    request: Request,
    webhook_id: str,
    status: Annotated[Literal["delivered", "failed", "dead_lettered"] | None, Query(description="only attempts with this outcome")] = None,
    change_id: Annotated[str | None, Query(max_length=200, description="only the attempts for this change")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The webhook's delivery attempts, newest first: outcome, HTTP status, error, duration; a dead-lettered one
    carries the change. Works for a deleted webhook too (its history stays)."""
    if webhook_id not in _webhooks(request).records and webhook_id not in await _webhooks(request).live():
        raise ApiError.of(404, "id", "exists", f"no webhook {webhook_id!r}")
    where = ["webhook_id = {w:String}"]
    parameters: dict[str, Any] = {"w": webhook_id, "limit": limit}
    if status:
        where.append("status = {s:String}")
        parameters["s"] = status
    if change_id:
        where.append("change_id = {c:String}")
        parameters["c"] = change_id
    rows = await request.app.state.reader.rows(
        "SELECT change_id, attempt, status, http_status, error, duration_ms, at, person_id, kind, url, change "
        f"FROM {{db}}.webhook_deliveries FINAL WHERE {' AND '.join(where)} ORDER BY at DESC, attempt DESC LIMIT {{limit:UInt32}}",
        parameters,
    )
    for row in rows:
        row["change"] = orjson.loads(row["change"]) if row["change"] else None
    return {"webhook_id": webhook_id, "deliveries": rows}
