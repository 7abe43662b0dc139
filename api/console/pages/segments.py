"""Admin > Segments in the console: every segment with its evaluation status, a builder (the condition as JSON, with
a live count and sample from POST /api/v1/segments/preview before saving), a segment's members, freezing it into a
list, and deleting it. Every change goes through the management API (/api/v1/segments)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console.app import console, flash, login_required

EXAMPLE = {
    "kind": "group",
    "match": "all",
    "conditions": [
        {"kind": "event", "event": "Order Completed", "operator": "at_least", "count": 1, "days": 30},
        {"kind": "property", "property": "email", "operator": "is_set"},
    ],
}


async def segment_choices(request: Request) -> list[dict]:
    answer = await console(request).api.get("/segments")
    return answer.body.get("segments", []) if answer.ok else []


def field_errors(answer) -> list[str]:
    """An API refusal as lines to show: each field error, else the message."""
    return [f"{e.get('field')}: {e.get('message')}" for e in answer.body.get("errors", [])] or [answer.message]


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v).strip() for k, v in form.items() if k != "csrftoken"}


@login_required
async def segments(request: Request) -> Response:
    """The segments with their status; POST previews (action=preview) or creates the segment in the builder."""
    c = console(request)
    values = await _form(request) if request.method == "POST" else {}
    condition_text = values.get("condition") or orjson.dumps(EXAMPLE, option=orjson.OPT_INDENT_2).decode()
    preview, errors = None, []
    if request.method == "POST":
        try:
            condition = orjson.loads(condition_text)
        except orjson.JSONDecodeError as exc:
            condition, errors = None, [f"condition: not JSON ({exc})"]
        if condition is not None and values.get("action") == "preview":
            answer = await c.api.call("POST", "/segments/preview", json={"condition": condition, "sample": 10})
            if answer.ok:
                preview = answer.body
            else:
                errors = field_errors(answer)
        elif condition is not None:
            body = {"name": values.get("name", ""), "description": values.get("description", ""), "condition": condition}
            answer = await c.api.call("POST", "/segments", json=body)
            if answer.ok:
                flash(request, f"Segment {body['name']} created; it is evaluated within seconds.")
                return RedirectResponse(c.path("segment_members", segment_id=answer.body["id"]), status_code=303)
            errors = field_errors(answer)
    answer = await c.api.get("/segments")
    return await c.render_page(
        request,
        "segments.html",
        section="segments",
        segments=answer.body.get("segments", []) if answer.ok else [],
        unavailable=None if answer.ok else answer.message,
        condition_text=condition_text,
        name=values.get("name", ""),
        description=values.get("description", ""),
        preview=preview,
        errors=errors,
    )


@login_required
async def segment_members(request: Request) -> Response:
    c, segment_id = console(request), request.path_params["segment_id"]
    found = await c.api.get(f"/segments/{segment_id}")
    if not found.ok:
        flash(request, found.message, "error")
        return RedirectResponse("/admin/segments", status_code=303)
    params = {"cursor": request.query_params["cursor"]} if request.query_params.get("cursor") else {}
    members = await c.api.get(f"/segments/{segment_id}/members", limit=100, **params)
    return await c.render_page(
        request,
        "segment_members.html",
        section="segments",
        segment=found.body,
        condition_text=orjson.dumps(found.body.get("condition"), option=orjson.OPT_INDENT_2).decode(),
        members=members.body.get("members", []) if members.ok else [],
        next_cursor=members.body.get("next_cursor") if members.ok else None,
    )


@login_required
async def segment_freeze(request: Request) -> Response:
    """Freeze the members into a new list (a job, followed on its page)."""
    c, segment_id = console(request), request.path_params["segment_id"]
    name = (await _form(request)).get("name", "")
    answer = await c.api.call("POST", f"/segments/{segment_id}/freeze", json={"name": name})
    if answer.ok:
        flash(request, f"Freezing the members into the list {name}.")
        return RedirectResponse(c.path("job", job_id=answer.body["job_id"]) + "?back=", status_code=303)
    flash(request, f"Refused: {answer.message}", "error")
    return RedirectResponse(c.path("segment_members", segment_id=segment_id), status_code=303)


@login_required
async def segment_delete(request: Request) -> Response:
    c, segment_id = console(request), request.path_params["segment_id"]
    found = await c.api.get(f"/segments/{segment_id}")
    name = found.body.get("name", segment_id) if found.ok else segment_id
    return await c.confirm_then_delete(
        request,
        what=f"the segment {name}",
        section="segments",
        consequences=[f"Every member of {name} exits it; its past memberships stay queryable in segment_members."],
        back=c.path("segment_members", segment_id=segment_id),
        api_path=f"/segments/{segment_id}",
        done="/admin/segments",
    )


ROUTES: list = [
    Route("/admin/segments", segments, methods=["GET", "POST"], name="segments"),
    Route("/admin/segments/{segment_id}", segment_members, name="segment_members"),
    Route("/admin/segments/{segment_id}/freeze", segment_freeze, methods=["POST"], name="segment_freeze"),
    Route("/admin/segments/{segment_id}/delete", segment_delete, methods=["GET", "POST"], name="segment_delete"),
]
