"""Admin > Webhooks in the console: the subscriptions (list, create with each field's error where it was typed,
delete after a confirmation) and a webhook's recent deliveries with their outcome. Every change goes through the
management API (/api/v1/webhooks)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console.app import console, flash, login_required
from api.console.pages.groups import list_choices, stage_choices
from schemas.profile_changes import CHANGE_KINDS

FIELDS = ("url", "kinds", "stages", "lists", "segments", "description", "secret")


def webhook_body(form: FormData) -> dict[str, Any]:
    """The API body of the create form: checked kinds, chosen stages and lists, segment ids comma-separated."""
    text = {key: str(form.get(key) or "").strip() for key in ("url", "description", "secret", "segments")}
    body: dict[str, Any] = {
        "url": text["url"],
        "kinds": [str(v) for v in form.getlist("kinds")],
        "stages": [str(v) for v in form.getlist("stages") if v],
        "lists": [str(v) for v in form.getlist("lists") if v],
        "segments": [s.strip() for s in text["segments"].split(",") if s.strip()],
        "description": text["description"],
    }
    if text["secret"]:
        body["secret"] = text["secret"]
    return body


def errors_by_field(api_errors: dict[str, str]) -> dict[str, str]:
    """The API's error fields ('url', 'kinds.0', ...) onto the form's inputs; anything else is the form's."""
    found: dict[str, str] = {}
    for field, message in api_errors.items():
        name = field.split(".", 1)[0]
        found.setdefault(name if name in FIELDS else "_form", message)
    return found


async def _page(request: Request, values: dict[str, Any], errors: dict[str, str], created: dict | None = None, status: int = 200):
    c = console(request)
    answer = await c.api.get("/webhooks")
    return await c.render_page(
        request,
        "webhooks.html",
        status_code=status,
        section="webhooks",
        webhooks=answer.body.get("webhooks", []) if answer.ok else [],
        unavailable=None if answer.ok else answer.message,
        kinds=CHANGE_KINDS,
        stages=await stage_choices(request),
        lists=await list_choices(request),
        values=values,
        errors=errors,
        message=errors.get("_form"),
        created=created,
    )


@login_required
async def webhooks(request: Request) -> Response:
    """The webhooks; POST creates one (its secret is shown this once)."""
    if request.method == "GET":
        return await _page(request, {}, {})
    body = webhook_body(await request.form())
    answer = await console(request).api.call("POST", "/webhooks", json=body)
    if answer.ok:
        flash(request, f"Webhook created: changes go to {answer.body['url']}.")
        return await _page(request, {}, {}, created=answer.body, status=201)
    errors = errors_by_field(answer.field_errors()) or {"_form": answer.message}
    return await _page(request, body, errors, status=422 if answer.status == 422 else 400)


@login_required
async def webhook(request: Request) -> Response:
    """One webhook and its recent delivery attempts, newest first."""
    c, webhook_id = console(request), request.path_params["webhook_id"]
    found = await c.api.get(f"/webhooks/{webhook_id}")
    if not found.ok:
        flash(request, f"No webhook {webhook_id}.", "error")
        return RedirectResponse(c.path("webhooks"), status_code=303)
    status = request.query_params.get("status") or None
    attempts = await c.api.get(f"/webhooks/{webhook_id}/deliveries", limit=100, status=status)
    return await c.render_page(
        request,
        "webhook.html",
        section="webhooks",
        webhook=found.body,
        deliveries=attempts.body.get("deliveries", []) if attempts.ok else [],
        unavailable=None if attempts.ok else attempts.message,
        status=status,
    )


@login_required
async def webhook_delete(request: Request) -> Response:
    c, webhook_id = console(request), request.path_params["webhook_id"]
    found = await c.api.get(f"/webhooks/{webhook_id}")
    url = found.body.get("url", webhook_id) if found.ok else webhook_id
    return await c.confirm_then_delete(
        request,
        what=f"the webhook to {url}",
        section="webhooks",
        consequences=["No more changes are sent to it; its past deliveries stay readable."],
        back=c.path("webhook", webhook_id=webhook_id),
        api_path=f"/webhooks/{webhook_id}",
        done=c.path("webhooks"),
    )


ROUTES: list = [
    Route("/admin/webhooks", webhooks, methods=["GET", "POST"], name="webhooks"),
    Route("/admin/webhooks/{webhook_id}", webhook, name="webhook"),
    Route("/admin/webhooks/{webhook_id}/delete", webhook_delete, methods=["GET", "POST"], name="webhook_delete"),
]
