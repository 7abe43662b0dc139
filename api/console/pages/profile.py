"""A user's profile: header, tabs (Properties with edit in place, Events with the daily graph, Sessions,
Configs with overrides, Companies, Identity) and the actions (disable/activate, tags, delete, erase with a second confirmation)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console import people_view as view
from api.console.app import console, flash, login_required
from api.console.forms import DEFAULT_LABELS, DEFAULT_PROPERTIES, field_spec, typed_value
from api.console.pages.groups import list_choices, stage_choices
from api.console.pages.objects import profile_objects
from api.console.pages.people import definitions

TABS = (
    ("properties", "Properties"),
    ("events", "Events"),
    ("sessions", "Sessions"),
    ("stage", "Stage history"),
    ("groups", "Segments & lists"),
    ("configs", "Configs"),
    ("companies", "Companies"),
    ("objects", "Deals / Activities / Tickets"),
    ("identity", "Identity"),
)
GRAPH_DAYS = (7, 30, 90)
TIMELINE_PAGE = 50


async def _user(request: Request) -> dict[str, Any] | None:
    answer = await console(request).api.get(f"/users/{request.path_params['person_id']}")
    return answer.body if answer.ok else None


def _not_found(request: Request) -> Response:
    flash(request, "No such user (deleted, or never created).", "error")
    return RedirectResponse("/people", status_code=303)


@login_required
async def profile(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _not_found(request)
    c, person_id = console(request), user["person_id"]
    tab = request.query_params.get("tab", "properties")
    tab = tab if tab in dict(TABS) else "properties"
    context: dict[str, Any] = {}
    if tab == "properties":
        context["property_groups"] = view.property_groups(user, DEFAULT_PROPERTIES)
        context["property_names"] = sorted({*DEFAULT_PROPERTIES, *(d["name"] for d in await definitions(request))})
    elif tab == "events":
        context.update(await _events_tab(request, person_id))
    elif tab == "sessions":
        answer = await c.api.get(f"/users/{person_id}/sessions", limit=100)
        context["sessions"] = [view.session_row(s) for s in (answer.body.get("sessions", []) if answer.ok else [])]
    elif tab == "configs":
        context.update(await _configs_tab(request, person_id))
    elif tab == "stage":
        answer = await c.api.get(f"/users/{person_id}/stage-history")
        context["stage_history"] = list(reversed(answer.body.get("history", []))) if answer.ok else []
    elif tab == "groups":
        answer = await c.api.get(f"/users/{person_id}/lists")
        context["memberships"] = answer.body.get("memberships", []) if answer.ok else []
        context["lists"] = await list_choices(request)
        answer = await c.api.get(f"/users/{person_id}/segments", include_exited="true")
        context["segments"] = answer.body.get("segments", []) if answer.ok else []
    elif tab == "companies":
        answer = await c.api.get(f"/users/{person_id}/companies", include_ended="true")
        context["companies"] = answer.body.get("companies", []) if answer.ok else []
    elif tab == "objects":
        context["objects_by_type"] = await profile_objects(request, person_id)
    elif tab == "identity":
        answer = await c.api.get(f"/users/{person_id}/merges")
        context["merges"] = answer.body.get("merges", []) if answer.ok else []
    stages = await stage_choices(request)
    return await c.render_page(
        request,
        "profile.html",
        section="people",
        user=user,
        stages=stages,
        stage_names={s["id"]: s["name"] for s in stages},
        props=user.get("properties") or {},
        name=view.display_name(user),
        kind=view.kind_of(user),
        tab=tab,
        tabs=TABS,
        tab_label=dict(TABS)[tab],
        labels=DEFAULT_LABELS,
        short_time=view.short_time,
        **context,
    )


async def _events_tab(request: Request, person_id: str) -> dict[str, Any]:
    api, params = console(request).api, request.query_params
    days = int(params.get("days")) if params.get("days", "").isdigit() and int(params["days"]) in GRAPH_DAYS else 30
    event = params.get("event") or None
    counts = await api.get(f"/users/{person_id}/event-counts", days=days, event=event)
    series = counts.body.get("days", []) if counts.ok else []
    timeline = await api.get(f"/users/{person_id}/events", event=event, limit=TIMELINE_PAGE, cursor=params.get("cursor"))
    events = timeline.body.get("events", []) if timeline.ok else []
    for e in events:
        e["properties_text"] = orjson.dumps(e.get("properties") or {}).decode()[:300]
        e["page_url"] = (e.get("properties") or {}).get("url") or ""
    names = sorted({e.get("event") for e in events if e.get("event")} | ({event} if event else set()))
    return {
        "days": days,
        "event": event,
        "events": events,
        "event_names": names,
        "next_cursor": timeline.body.get("next_cursor") if timeline.ok else None,
        "series_json": orjson.dumps(series).decode(),
        "total": sum(int(d.get("count", 0)) for d in series),
    }


async def _configs_tab(request: Request, person_id: str) -> dict[str, Any]:
    """Each config: what was last served (from the exposures), what would be served now and why, the
    user's override; the variants come from the configs themselves, for the override form."""
    api = console(request).api
    view_answer, configs = await api.get(f"/users/{person_id}/configs"), await api.get("/configs")
    variants = {c["key"]: [v["key"] for v in c.get("variants", [])] for c in (configs.body.get("configs", []) if configs.ok else [])}
    rows = view_answer.body.get("configs", []) if view_answer.ok else []
    for row in rows:
        row["variants"] = variants.get(row["key"], [])
    return {"configs": rows, "configs_error": None if view_answer.ok else view_answer.message}


@login_required
async def profile_config_override(request: Request) -> Response:
    """Set (variant, optional expiry) or remove (remove=1) this user's override of one config."""
    person_id, key = request.path_params["person_id"], request.path_params["key"]
    form = await request.form()
    path = f"/users/{person_id}/configs/{key}/override"
    if form.get("remove"):
        answer = await console(request).api.call("DELETE", path)
        done = f"{key}: override removed."
    else:
        body: dict[str, Any] = {"variant": str(form.get("variant") or "")}
        if expires := str(form.get("expires_at") or "").strip():
            body["expires_at"] = expires if expires.endswith("Z") or "+" in expires else f"{expires}:00Z"
        answer = await console(request).api.call("PUT", path, json=body)
        done = f"{key}: {body['variant']} served to this user{' until ' + body['expires_at'] if 'expires_at' in body else ''}."
    flash(
        request,
        done if answer.ok else f"{key}: {next(iter(answer.field_errors().values()), answer.message)}",
        "info" if answer.ok else "error",
    )
    return _back(person_id, "configs")


async def _patch(request: Request, person_id: str, body: dict[str, Any]):
    return await console(request).api.call("PATCH", f"/users/{person_id}", params={"wait": "true"}, json=body)


def _back(person_id: str, tab: str = "properties") -> Response:
    return RedirectResponse(f"/people/{person_id}?tab={tab}", status_code=303)


@login_required
async def profile_property_row(request: Request) -> Response:
    """One property's row, to show or (edit=1) to edit in place (htmx swaps it in)."""
    user = await _user(request)
    if user is None:
        return _not_found(request)
    name = request.path_params["name"]
    value = (user.get("properties") or {}).get(name, user.get(name))
    return console(request).render(
        request, "property_row.html", user=user, key=name, value=value, editing=request.query_params.get("edit") == "1", error=None
    )


@login_required
async def profile_property(request: Request) -> Response:
    """Set (or, with an empty value, unset) one property; typed by its definition, checked again by the API."""
    person_id = request.path_params["person_id"]
    form = await request.form()
    name, text = str(form.get("name") or "").strip(), str(form.get("value") or "")
    by_name = {d["name"]: d for d in await definitions(request)}
    spec = field_spec(by_name.get(name, {"name": name, "type": "string"}), custom=name not in DEFAULT_PROPERTIES)
    value, error = typed_value(spec, text)
    answer = None
    if not name:
        error = "Give the property's name."
    elif error is None:
        body = {"unset": [name]} if value is None else {"set": {name: value}}
        answer = await _patch(request, person_id, body)
        if not answer.ok:
            error = next(iter(answer.field_errors().values()), answer.message)
    if request.headers.get("hx-request"):
        user = await _user(request)
        if user is None:
            return Response(status_code=404)
        shown = text if error else (user.get("properties") or {}).get(name, user.get(name))
        # 200 either way: htmx swaps only successful answers, and the refusal belongs in the row.
        return console(request).render(request, "property_row.html", user=user, key=name, value=shown, editing=bool(error), error=error)
    flash(request, f"{name}: {error}" if error else f"{name} saved.", "error" if error else "info")
    return _back(person_id)


@login_required
async def profile_status(request: Request) -> Response:
    person_id = request.path_params["person_id"]
    status = str((await request.form()).get("status") or "")
    if status not in view.STATUSES:
        flash(request, "The status is active or disabled.", "error")
        return _back(person_id)
    answer = await _patch(request, person_id, {"status": status})
    flash(
        request,
        f"User {'disabled' if status == 'disabled' else 'activated'}." if answer.ok else answer.message,
        "info" if answer.ok else "error",
    )
    return _back(person_id, request.query_params.get("tab", "properties"))


@login_required
async def profile_tags(request: Request) -> Response:
    person_id = request.path_params["person_id"]
    form = await request.form()
    add = [t.strip() for t in str(form.get("add") or "").split(",") if t.strip()]
    remove = [str(t) for t in form.getlist("remove") if str(t).strip()]
    if not add and not remove:
        flash(request, "Give a tag.", "error")
        return _back(person_id)
    answer = await _patch(request, person_id, {"tags": {"add": add, "remove": remove}})
    if answer.ok:
        flash(request, f"Tag {'added' if add else 'removed'}: {', '.join(add or remove)}.")
    else:
        flash(request, answer.message, "error")
    return _back(person_id)


@login_required
async def profile_delete(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _not_found(request)
    c, person_id, name = console(request), user["person_id"], view.display_name(user)
    if request.method == "GET":
        return await c.render_page(
            request,
            "confirm.html",
            section="people",
            heading=f"Delete {name}?",
            yes="Yes, delete",
            lines=[
                f"Delete {name}: the profile, their events, sessions and daily counts disappear from every table.",
                "Later tracking with the same ids starts a fresh profile. This cannot be undone.",
            ],
            action=c.path("profile_delete", person_id=person_id),
            carried=[],
            back=f"/people/{person_id}",
        )
    answer = await c.api.call("DELETE", f"/users/{person_id}", params={"wait": "true"})
    if not answer.ok:
        flash(request, f"Delete refused: {answer.message}", "error")
        return _back(person_id)
    flash(request, f"{name} deleted.")
    return RedirectResponse("/people", status_code=303)


@login_required
async def profile_erase(request: Request) -> Response:
    """GDPR erasure: a first confirmation, then a second one that names everything it does."""
    user = await _user(request)
    if user is None:
        return _not_found(request)
    c, person_id, name = console(request), user["person_id"], view.display_name(user)
    action = c.path("profile_erase", person_id=person_id)
    step = "0" if request.method == "GET" else str((await request.form()).get("step") or "0")
    if step == "0":
        return await c.render_page(
            request,
            "confirm.html",
            section="people",
            heading=f"Erase {name}? (GDPR)",
            yes="Yes, continue",
            lines=["Erasure is for a person who asked to be forgotten. The next page says exactly what it does."],
            action=action,
            carried=[("step", "1")],
            back=f"/people/{person_id}",
        )
    identifiers = [
        f"{k} {user.get(k) or (user.get('properties') or {}).get(k)}"
        for k in ("user_id", "email", "phone", "customer_id")
        if user.get(k) or (user.get("properties") or {}).get(k)
    ]
    ids = ", ".join(identifiers + [f"{len(user.get('distinct_ids') or [])} tracking ids"])
    if step == "1":
        return await c.render_page(
            request,
            "confirm.html",
            section="people",
            heading=f"Really erase {name}?",
            yes=f"Yes, erase {name} for good",
            lines=[
                f"This deletes {name}'s profile, events, sessions and daily counts, and keeps them deleted through a replay of Kafka.",
                f"It suppresses their identifiers ({ids}): later tracking with them is dropped at the collector and recorded, not projected.",
                "It records the erasure itself (hashed identifiers and the time) so it can be shown to an auditor. It cannot be undone.",
            ],
            action=action,
            carried=[("step", "2")],
            back=f"/people/{person_id}",
        )
    answer = await c.api.call("POST", f"/users/{person_id}/erase", params={"wait": "true"})
    if not answer.ok:
        flash(request, f"Erase refused: {answer.message}", "error")
        return _back(person_id)
    flash(request, f"{name} erased.")
    return RedirectResponse("/people", status_code=303)


ROUTES = [
    Route("/people/{person_id}", profile, name="profile"),
    Route("/people/{person_id}/properties", profile_property, methods=["POST"], name="profile_property"),
    Route("/people/{person_id}/properties/{name}", profile_property_row, name="profile_property_row"),
    Route("/people/{person_id}/configs/{key}/override", profile_config_override, methods=["POST"], name="profile_config_override"),
    Route("/people/{person_id}/status", profile_status, methods=["POST"], name="profile_status"),
    Route("/people/{person_id}/tags", profile_tags, methods=["POST"], name="profile_tags"),
    Route("/people/{person_id}/delete", profile_delete, methods=["GET", "POST"], name="profile_delete"),
    Route("/people/{person_id}/erase", profile_erase, methods=["GET", "POST"], name="profile_erase"),
]
