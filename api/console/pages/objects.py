"""Deals, tickets, activities (and any defined type): a type's list filtered by stage and owner, with Create;
an object's page with its stage (move), owner and due time, properties, and linked users and companies (link,
unlink), and Delete. Every change goes through /api/v1/objects (?wait=true), so the page shows it after the redirect."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console import people_view as view
from api.console.app import console, flash, login_required
from api.console.forms import field_spec, typed_value

PROFILE_TYPES = ("deal", "activity", "ticket")


def object_path(object_type: str, object_id: str = "") -> str:
    base = f"/objects/{quote(object_type, safe='')}"
    return f"{base}/{quote(object_id, safe='')}" if object_id else base


def _failure(answer) -> str:
    return next(iter(answer.field_errors().values()), answer.message)


async def object_types(request: Request) -> list[dict[str, Any]]:
    answer = await console(request).api.get("/object-types")
    return answer.body.get("object_types", []) if answer.ok else []


def _value(object_type: dict[str, Any] | None, name: str, text: str) -> Any:
    """A form's text as its property's type takes it (the type's definitions), else a number when it reads as one.
    Text a definition cannot read goes as it is: the API's 422 names the property and the rule."""
    definition = next((d for d in (object_type or {}).get("properties", []) if d["name"] == name), None)
    if definition is not None:
        value, error = typed_value(field_spec(definition, custom=True), text)
        return text if error else value
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


@login_required
async def objects(request: Request) -> Response:
    object_type = request.path_params["object_type"]
    types = await object_types(request)
    current = next((t for t in types if t["name"] == object_type), None)
    if current is None:
        flash(request, f"No object type {object_type!r}.", "error")
        return RedirectResponse("/objects/deal", status_code=303)
    params = request.query_params
    stage = params.get("stage") if params.get("stage") in current["stages"] else None
    owner = params.get("owner") or None
    answer = await console(request).api.get(object_path(object_type), stage=stage, owner=owner, limit=50, cursor=params.get("cursor"))
    rows, next_cursor = (answer.body.get("objects", []), answer.body.get("next_cursor")) if answer.ok else ([], None)
    query = {k: v for k, v in (("stage", stage), ("owner", owner)) if v}
    return await console(request).render_page(
        request,
        "objects.html",
        section="objects",
        types=types,
        object_type=current,
        objects=rows,
        stage=stage or "",
        owner=owner or "",
        error=None if answer.ok else answer.message,
        short_time=view.short_time,
        object_path=object_path,
        next_link=f"?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
    )


@login_required
async def create_object(request: Request) -> Response:
    object_type = request.path_params["object_type"]
    form = await request.form()
    text = {k: str(form.get(k) or "").strip() for k in ("id", "stage", "owner", "due_at", "name", "user", "company")}
    body: dict[str, Any] = {k: text[k] for k in ("id", "stage", "owner") if text[k]}
    if text["due_at"]:
        body["due_at"] = text["due_at"] if "T" not in text["due_at"] or text["due_at"].endswith("Z") else f"{text['due_at']}:00Z"
    properties = {"name": text["name"]} if text["name"] else {}
    current = next((t for t in await object_types(request) if t["name"] == object_type), None)
    for name, value in zip(form.getlist("property"), form.getlist("value"), strict=False):
        if str(name).strip() and str(value).strip():
            properties[str(name).strip()] = _value(current, str(name).strip(), str(value))
    body["properties"] = properties
    body["links"] = {"users": [text["user"]] if text["user"] else [], "companies": [text["company"]] if text["company"] else []}
    answer = await console(request).api.call("POST", object_path(object_type), params={"wait": "true"}, json=body)
    if not answer.ok:
        flash(request, f"Not created: {_failure(answer)}", "error")
        return RedirectResponse(object_path(object_type), status_code=303)
    flash(request, f"{object_type.capitalize()} {text['name'] or answer.body['id']} created.")
    return RedirectResponse(object_path(object_type, answer.body["id"]), status_code=303)


@login_required
async def object_page(request: Request) -> Response:
    object_type, object_id = request.path_params["object_type"], request.path_params["object_id"]
    found = await console(request).api.get(object_path(object_type, object_id))
    if not found.ok:
        flash(request, f"No such {object_type} (deleted, or never created).", "error")
        return RedirectResponse(object_path(object_type), status_code=303)
    types = {t["name"]: t for t in await object_types(request)}
    return await console(request).render_page(
        request,
        "object.html",
        section="objects",
        item=found.body,
        object_type=types.get(object_type, {"name": object_type, "stages": [found.body["stage"]], "label": object_type}),
        short_time=view.short_time,
        path=object_path(object_type, object_id),
    )


async def _change(request: Request, method: str, suffix: str, body: dict[str, Any] | None, done: str) -> Response:
    path = object_path(request.path_params["object_type"], request.path_params["object_id"])
    answer = await console(request).api.call(method, f"{path}{suffix}", params={"wait": "true"}, json=body)
    flash(request, done if answer.ok else f"{done.split(':')[0].rstrip('.')} failed: {_failure(answer)}", "info" if answer.ok else "error")
    return RedirectResponse(path, status_code=303)


@login_required
async def move_object(request: Request) -> Response:
    stage = str((await request.form()).get("stage") or "")
    return await _change(request, "POST", "/stage", {"stage": stage}, f"Moved to {stage}.")


@login_required
async def edit_object(request: Request) -> Response:
    form = await request.form()
    body: dict[str, Any] = {"owner": str(form.get("owner") or "").strip()}
    due = str(form.get("due_at") or "").strip()
    body["due_at"] = (due if due.endswith("Z") else f"{due}:00Z") if due else None
    return await _change(request, "PATCH", "", body, "Saved.")


@login_required
async def object_property(request: Request) -> Response:
    form = await request.form()
    name, value = str(form.get("name") or "").strip(), str(form.get("value") or "")
    current = next((t for t in await object_types(request) if t["name"] == request.path_params["object_type"]), None)
    body = {"unset": [name]} if form.get("remove") else {"set": {name: _value(current, name, value)}}
    return await _change(request, "PATCH", "", body, f"Property {name} {'removed' if form.get('remove') else 'saved'}.")


@login_required
async def link_object(request: Request) -> Response:
    form = await request.form()
    kind, ref = str(form.get("kind") or "users"), str(form.get("ref") or "").strip()
    kind = kind if kind in ("users", "companies") else "users"
    suffix = "/unlink" if form.get("unlink") else "/links"
    return await _change(request, "POST", suffix, {kind: [ref]}, f"{'Unlinked' if form.get('unlink') else 'Linked'}: {ref}.")


@login_required
async def delete_object(request: Request) -> Response:
    object_type, object_id = request.path_params["object_type"], request.path_params["object_id"]
    return await console(request).confirm_then_delete(
        request,
        what=f"the {object_type} {object_id}",
        section="objects",
        consequences=["Its links go; its users and companies stay. Each linked user's timeline shows it deleted."],
        back=object_path(object_type, object_id),
        api_path=object_path(object_type, object_id),
        api_params={"wait": "true"},  # the list it returns to no longer shows it
        done=object_path(object_type),
    )


async def profile_objects(request: Request, person_id: str) -> dict[str, list[dict[str, Any]]]:
    """The profile's Deals / Activities / Tickets tab: the user's objects of each type."""
    api = console(request).api
    found = {}
    for object_type in PROFILE_TYPES:
        answer = await api.get(f"/users/{person_id}/objects", type=object_type, limit=100)
        found[object_type] = answer.body.get("objects", []) if answer.ok else []
    return found


ROUTES = [
    Route("/objects/{object_type}", objects, name="objects"),
    Route("/objects/{object_type}/new", create_object, methods=["POST"], name="create_object"),
    Route("/objects/{object_type}/{object_id}", object_page, name="object"),
    Route("/objects/{object_type}/{object_id}/stage", move_object, methods=["POST"], name="move_object"),
    Route("/objects/{object_type}/{object_id}/edit", edit_object, methods=["POST"], name="edit_object"),
    Route("/objects/{object_type}/{object_id}/properties", object_property, methods=["POST"], name="object_property"),
    Route("/objects/{object_type}/{object_id}/links", link_object, methods=["POST"], name="link_object"),
    Route("/objects/{object_type}/{object_id}/delete", delete_object, methods=["GET", "POST"], name="delete_object"),
]
