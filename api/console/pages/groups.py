"""Lifecycle stages and lists in the console: Admin > Lifecycle stages (add, rename, reorder, edit a stage's rule with
a preview of who meets it, delete with the users moved to another stage), Admin > Lists (create, rename, delete, members), and a profile's stage and list forms.
Every change goes through the management API (/api/v1/lifecycle-stages, /api/v1/lists, PATCH /users)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console.app import console, flash, login_required
from api.console.pages.segments import field_errors


async def stage_choices(request: Request, with_counts: bool = False) -> list[dict[str, Any]]:
    """The stages for a picker; their user counts (a ClickHouse read over every person) only when asked for."""
    answer = await console(request).api.get("/lifecycle-stages", counts=str(with_counts).lower())
    return answer.body.get("stages", []) if answer.ok else []


async def list_choices(request: Request) -> list[dict[str, Any]]:
    """The lists for a picker, without member counts."""
    answer = await console(request).api.get("/lists", counts="false")
    return answer.body.get("lists", []) if answer.ok else []


def _done(request: Request, answer, ok_text: str, url: str) -> Response:
    flash(request, ok_text if answer.ok else f"Refused: {answer.message}", "info" if answer.ok else "error")
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v).strip() for k, v in form.items() if k != "csrftoken"}


# -- Admin > Lifecycle stages ---------------------------------------------------------------------------------


@login_required
async def stages(request: Request) -> Response:
    """The stages in order with their user counts; POST adds one."""
    c = console(request)
    if request.method == "POST":
        values = await _form(request)
        answer = await c.api.call("POST", "/lifecycle-stages", json={"id": values.get("id", ""), "name": values.get("name", "")})
        return _done(request, answer, f"Stage {values.get('name')} added.", "/admin/stages")
    answer = await c.api.get("/lifecycle-stages")
    return await c.render_page(
        request,
        "stages.html",
        section="stages",
        stages=answer.body.get("stages", []) if answer.ok else [],
        unavailable=None if answer.ok else answer.message,
    )


@login_required
async def stage_rename(request: Request) -> Response:
    stage_id = request.path_params["stage_id"]
    name = (await _form(request)).get("name", "")
    answer = await console(request).api.call("PATCH", f"/lifecycle-stages/{stage_id}", json={"name": name})
    return _done(request, answer, f"Stage {stage_id} renamed to {name}.", "/admin/stages")


@login_required
async def stage_move(request: Request) -> Response:
    """Move a stage one place up or down (PUT /lifecycle-stages/order with every id)."""
    stage_id, step = request.path_params["stage_id"], (await _form(request)).get("step")
    ids = [s["id"] for s in await stage_choices(request)]
    if stage_id in ids and step in ("-1", "1"):
        index = ids.index(stage_id)
        target = max(0, min(len(ids) - 1, index + int(step)))
        ids.insert(target, ids.pop(index))
    answer = await console(request).api.call("PUT", "/lifecycle-stages/order", json={"ids": ids})
    return _done(request, answer, f"Stage {stage_id} moved.", "/admin/stages")


@login_required
async def stage_delete(request: Request) -> Response:
    """Confirm, choosing where the stage's users go when it has any; then DELETE and follow the move's job."""
    c, stage_id = console(request), request.path_params["stage_id"]
    choices = await stage_choices(request, with_counts=True)  # the confirmation says how many users move
    stage = next((s for s in choices if s["id"] == stage_id), None)
    if stage is None:
        flash(request, f"No stage {stage_id}.", "error")
        return RedirectResponse("/admin/stages", status_code=303)
    if request.method == "GET":
        return await c.render_page(
            request, "stage_delete.html", section="stages", stage=stage, others=[s for s in choices if s["id"] != stage_id]
        )
    move_to = (await _form(request)).get("move_to") or None
    answer = await c.api.call("DELETE", f"/lifecycle-stages/{stage_id}", params={"move_to": move_to} if move_to else None)
    if answer.ok and answer.body.get("job_id"):
        flash(request, f"Stage {stage['name']} deleted; moving its {answer.body['users']} users to {move_to}.")
        return RedirectResponse(c.path("job", job_id=answer.body["job_id"]) + "?back=", status_code=303)
    return _done(request, answer, f"Stage {stage['name']} deleted.", "/admin/stages")


RULE_EXAMPLE = {
    "kind": "group",
    "match": "all",
    "conditions": [{"kind": "event", "event": "Order Completed", "operator": "at_least", "count": 1, "days": 30}],
}


@login_required
async def stage_rule(request: Request) -> Response:
    """A stage's rule as JSON (any condition of the segment language): preview how many users meet it now
    (POST /segments/preview), save it, or remove it (PATCH /lifecycle-stages/{id} with `rule`)."""
    c, stage_id = console(request), request.path_params["stage_id"]
    found = await c.api.get(f"/lifecycle-stages/{stage_id}")
    if not found.ok:
        flash(request, found.message, "error")
        return RedirectResponse("/admin/stages", status_code=303)
    stage, values = found.body, await _form(request) if request.method == "POST" else {}
    rule_text = values.get("rule") or orjson.dumps(stage.get("rule") or RULE_EXAMPLE, option=orjson.OPT_INDENT_2).decode()
    preview, errors = None, []
    if request.method == "POST" and values.get("action") == "remove":
        answer = await c.api.call("PATCH", f"/lifecycle-stages/{stage_id}", json={"rule": None})
        return _done(request, answer, f"The rule of {stage['name']} is removed.", "/admin/stages")
    if request.method == "POST":
        try:
            rule = orjson.loads(rule_text)
        except orjson.JSONDecodeError as exc:
            rule, errors = None, [f"rule: not JSON ({exc})"]
        if rule is not None and values.get("action") == "preview":
            group = rule if isinstance(rule, dict) and rule.get("kind") == "group" else {"kind": "group", "conditions": [rule]}
            answer = await c.api.call("POST", "/segments/preview", json={"condition": group, "sample": 10})
            preview, errors = (answer.body, []) if answer.ok else (None, field_errors(answer))
        elif rule is not None:
            answer = await c.api.call("PATCH", f"/lifecycle-stages/{stage_id}", json={"rule": rule})
            if answer.ok:
                return _done(
                    request, answer, f"Rule of {stage['name']} saved: it moves users forward into it, never back.", "/admin/stages"
                )
            errors = field_errors(answer)
    return await c.render_page(
        request, "stage_rule.html", section="stages", stage=stage, rule_text=rule_text, preview=preview, errors=errors
    )


# -- Admin > Lists -------------------------------------------------------------------------------------------


@login_required
async def lists(request: Request) -> Response:
    c = console(request)
    if request.method == "POST":
        name = (await _form(request)).get("name", "")
        answer = await c.api.call("POST", "/lists", json={"name": name})
        if answer.ok:
            flash(request, f"List {name} created.")
            return RedirectResponse(c.path("list_members", list_id=answer.body["id"]), status_code=303)
        return _done(request, answer, "", "/admin/lists")
    answer = await c.api.get("/lists")
    return await c.render_page(
        request,
        "lists.html",
        section="lists",
        lists=answer.body.get("lists", []) if answer.ok else [],
        unavailable=None if answer.ok else answer.message,
    )


@login_required
async def list_members(request: Request) -> Response:
    """A list's members (who added each, when); forms to rename it, add refs and remove members."""
    c, list_id = console(request), request.path_params["list_id"]
    found = await c.api.get(f"/lists/{list_id}")
    if not found.ok:
        flash(request, f"No list {list_id}.", "error")
        return RedirectResponse("/admin/lists", status_code=303)
    params = {"cursor": request.query_params["cursor"]} if request.query_params.get("cursor") else {}
    members = await c.api.get(f"/lists/{list_id}/members", limit=100, **params)
    return await c.render_page(
        request,
        "list_members.html",
        section="lists",
        list=found.body,
        members=members.body.get("members", []) if members.ok else [],
        next_cursor=members.body.get("next_cursor") if members.ok else None,
    )


@login_required
async def list_rename(request: Request) -> Response:
    list_id = request.path_params["list_id"]
    name = (await _form(request)).get("name", "")
    answer = await console(request).api.call("PATCH", f"/lists/{list_id}", json={"name": name})
    return _done(request, answer, f"List renamed to {name}.", console(request).path("list_members", list_id=list_id))


@login_required
async def list_add(request: Request) -> Response:
    """Add the refs typed in (one per line or comma-separated): a job, followed on its page."""
    c, list_id = console(request), request.path_params["list_id"]
    refs = [r.strip() for r in (await _form(request)).get("refs", "").replace(",", "\n").splitlines() if r.strip()]
    answer = await c.api.call("POST", f"/lists/{list_id}/members", json={"refs": refs, "by": "console"})
    if answer.ok:
        flash(request, f"Adding {len(refs)} users.")
        return RedirectResponse(c.path("job", job_id=answer.body["job_id"]) + "?back=", status_code=303)
    return _done(request, answer, "", c.path("list_members", list_id=list_id))


@login_required
async def list_remove(request: Request) -> Response:
    c, list_id = console(request), request.path_params["list_id"]
    person = (await _form(request)).get("person", "")
    answer = await c.api.call("POST", f"/lists/{list_id}/members/remove", json={"refs": [person], "by": "console"})
    if answer.ok:
        flash(request, "Removing the user from the list.")
        return RedirectResponse(c.path("job", job_id=answer.body["job_id"]) + "?back=", status_code=303)
    return _done(request, answer, "", c.path("list_members", list_id=list_id))


@login_required
async def list_delete(request: Request) -> Response:
    c, list_id = console(request), request.path_params["list_id"]
    found = await c.api.get(f"/lists/{list_id}")
    name = found.body.get("name", list_id) if found.ok else list_id
    return await c.confirm_then_delete(
        request,
        what=f"the list {name}",
        section="lists",
        consequences=[f"{name} leaves every user's lists; its past memberships stay queryable in list_members."],
        back=c.path("list_members", list_id=list_id),
        api_path=f"/lists/{list_id}",
        done="/admin/lists",
    )


# -- a profile's stage and lists ------------------------------------------------------------------------------


@login_required
async def profile_stage(request: Request) -> Response:
    """Set the user's stage (backwards too), with the reason typed in."""
    person_id = request.path_params["person_id"]
    values = await _form(request)
    body = {"stage": values.get("stage", ""), "stage_reason": values.get("reason", "")}
    answer = await console(request).api.call("PATCH", f"/users/{person_id}", params={"wait": "true"}, json=body)
    return _done(request, answer, f"Stage set to {body['stage']}.", f"/people/{person_id}?tab=stage")


@login_required
async def profile_lists(request: Request) -> Response:
    """Add the user to a list, or remove them from one."""
    person_id = request.path_params["person_id"]
    values = await _form(request)
    edit = {"add": [values["add"]]} if values.get("add") else {"remove": [values.get("remove", "")]}
    answer = await console(request).api.call(
        "PATCH", f"/users/{person_id}", params={"wait": "true"}, json={"lists": {**edit, "by": "console"}}
    )
    return _done(request, answer, "Lists updated.", f"/people/{person_id}?tab=groups")


ROUTES: list = [
    Route("/admin/stages", stages, methods=["GET", "POST"], name="stages"),
    Route("/admin/stages/{stage_id}/rename", stage_rename, methods=["POST"], name="stage_rename"),
    Route("/admin/stages/{stage_id}/move", stage_move, methods=["POST"], name="stage_move"),
    Route("/admin/stages/{stage_id}/rule", stage_rule, methods=["GET", "POST"], name="stage_rule"),
    Route("/admin/stages/{stage_id}/delete", stage_delete, methods=["GET", "POST"], name="stage_delete"),
    Route("/admin/lists", lists, methods=["GET", "POST"], name="lists"),
    Route("/admin/lists/{list_id}", list_members, name="list_members"),
    Route("/admin/lists/{list_id}/rename", list_rename, methods=["POST"], name="list_rename"),
    Route("/admin/lists/{list_id}/add", list_add, methods=["POST"], name="list_add"),
    Route("/admin/lists/{list_id}/remove", list_remove, methods=["POST"], name="list_remove"),
    Route("/admin/lists/{list_id}/delete", list_delete, methods=["GET", "POST"], name="list_delete"),
    Route("/people/{person_id}/stage", profile_stage, methods=["POST"], name="profile_stage"),
    Route("/people/{person_id}/lists", profile_lists, methods=["POST"], name="profile_lists"),
]
