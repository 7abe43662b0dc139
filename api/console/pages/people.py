"""People: the searchable, filterable, sortable list; column choice; bulk edit; CSV export; Create User."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from api.console import people_view as view
from api.console.app import console, flash, login_required
from api.console.forms import DEFAULT_PROPERTIES, create_body, create_form_fields, property_of_error_field
from api.console.pages.groups import list_choices, stage_choices
from api.console.pages.segments import segment_choices

EXPORT_PAGE = 1000


async def definitions(request: Request) -> list[dict[str, Any]]:
    """Property definitions from the API; none while that API is not there (the defaults still render)."""
    answer = await console(request).api.get("/property-definitions")
    if not answer.ok or not isinstance(answer.body, dict | list):
        return []
    body = answer.body
    found = body.get("definitions") or body.get("items") or [] if isinstance(body, dict) else body
    return [d for d in found if isinstance(d, dict) and "name" in d]


@login_required
async def people(request: Request) -> Response:
    params = request.query_params
    answer = await console(request).api.get("/users", **view.api_list_params(params))
    users, next_cursor, error = [], None, None
    if answer.ok:
        users, next_cursor = answer.body.get("users", []), answer.body.get("next_cursor")
    else:
        error = answer.message
    columns = [view.COLUMNS[key] for key in view.chosen_columns(request.session.get("columns"))]
    property_names = sorted({*DEFAULT_PROPERTIES, *(d["name"] for d in await definitions(request))})
    stages = await stage_choices(request)
    return await console(request).render_page(
        request,
        "people.html",
        section="people",
        users=users,
        columns=columns,
        params=params,
        error=error,
        query_string=view.page_query(params, cursor=None),
        next_link=view.page_query(params, cursor=next_cursor) if next_cursor else None,
        first_page_link=view.page_query(params, cursor=None) if params.get("cursor") else None,
        current_sort=params.get("sort") or "-last_seen",
        sort_link=lambda column: view.sort_link(params, column),
        property_filters=list(view.property_filters(params).items()),
        filter_rows=view.PROPERTY_FILTER_ROWS,
        property_names=property_names,
        statuses=view.STATUSES,
        kinds=view.KINDS,
        stages=stages,
        stage_names={s["id"]: s["name"] for s in stages},
        lists=await list_choices(request),
        segments=await segment_choices(request),
        display_name=view.display_name,
        cell=view.cell,
    )


@login_required
async def people_columns(request: Request) -> Response:
    chosen = view.chosen_columns(request.session.get("columns"))
    if request.method == "POST":
        form = await request.form()
        back = str(form.get("back") or "")
        if form.get("reset"):
            request.session.pop("columns", None)
            return RedirectResponse(f"/people?{back}", status_code=303)
        order = [str(v) for v in form.getlist("order") if str(v) in view.COLUMNS]
        shown = {str(v) for v in form.getlist("show")}
        chosen = view.chosen_columns([key for key in order if key in shown])
        if move := str(form.get("move") or ""):
            key, _, step = move.partition(":")
            full = view.move_column(order, key, int(step) if step in ("-1", "1") else 0)
            request.session["column_order"] = full
            request.session["columns"] = [k for k in full if k in shown] or chosen
            return RedirectResponse(f"/people/columns?{back}", status_code=303)
        request.session["columns"] = chosen
        request.session["column_order"] = order
        return RedirectResponse(f"/people?{back}", status_code=303)
    saved_order = view.chosen_columns(request.session.get("column_order"))
    order = list(dict.fromkeys([*chosen, *saved_order, *view.COLUMNS]))
    return await console(request).render_page(
        request,
        "columns.html",
        section="people",
        chosen=chosen,
        ordered=[view.COLUMNS[k] for k in order],
        back=request.url.query,
    )


def _bulk_plan(form: Any) -> tuple[dict[str, Any] | None, str, str]:
    """(POST /users/bulk body without its target, a sentence saying it, an error) for the bulk form."""
    action, name, value = str(form.get("action") or ""), str(form.get("name") or "").strip(), str(form.get("value") or "").strip()
    if action in ("tag", "untag"):
        if not name:
            return None, "", "Give the tag."
        edit = {"add": [name]} if action == "tag" else {"remove": [name]}
        return {"action": "update", "update": {"tags": edit}}, f"{'Add' if action == 'tag' else 'Remove'} tag “{name}”", ""
    if action == "set":
        if not name:
            return None, "", "Give the property to set."
        return {"action": "update", "update": {"set": {name: value}}}, f"Set {name} to “{value}”", ""
    if action == "status":
        if value not in view.STATUSES:
            return None, "", "The status is active or disabled."
        return {"action": "update", "update": {"status": value}}, f"Set status to {value}", ""
    if action == "stage":
        if not value:
            return None, "", "Give the stage id."
        return {"action": "update", "update": {"stage": value, "stage_reason": "bulk edit in the console"}}, f"Set the stage to {value}", ""
    if action in ("list", "unlist"):
        if not name:
            return None, "", "Give the list id."
        edit = {"add": [name], "by": "console"} if action == "list" else {"remove": [name], "by": "console"}
        return {"action": "update", "update": {"lists": edit}}, f"{'Add to' if action == 'list' else 'Remove from'} list {name}", ""
    if action == "delete":
        return {"action": "delete"}, "Delete", ""
    return None, "", "Choose an action."


@login_required
async def people_bulk(request: Request) -> Response:
    form = await request.form()
    back = str(form.get("filter_query") or "")
    body, summary, error = _bulk_plan(form)
    scope = str(form.get("scope") or "selected")
    selected = [str(p) for p in form.getlist("person")]
    if body is not None and scope == "selected" and not selected:
        error = "Select at least one user, or apply to every user matching the filter."
    if error:
        flash(request, error, "error")
        return RedirectResponse(f"/people?{back}", status_code=303)
    filter_params = ImmutableMultiDict(parse_qsl(back))
    if scope == "filter":
        body["filter"] = view.api_filter(filter_params)
        described = ", ".join(f"{k}={v}" for k, v in body["filter"].items()) or "no filter"
        target = f"every user matching the filter ({described})"
    else:
        body["refs"] = selected
        target = f"{len(selected)} selected user{'s' if len(selected) != 1 else ''}"
    if form.get("confirmed") != "yes":
        carried = [(k, v) for k, v in form.multi_items() if k not in ("csrftoken", "confirmed")]
        return await console(request).render_page(
            request,
            "bulk_confirm.html",
            section="people",
            summary=summary,
            target=target,
            action=body["action"],
            carried=carried,
            back=back,
        )
    answer = await console(request).api.call("POST", "/users/bulk", json=body)
    if not answer.ok:
        flash(request, f"Bulk edit refused: {answer.message}", "error")
        return RedirectResponse(f"/people?{back}", status_code=303)
    flash(request, f"{summary} for {target}: started.")
    return RedirectResponse(console(request).path("job", job_id=answer.body["job_id"]) + f"?back={_q(back)}", status_code=303)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@login_required
async def job(request: Request) -> Response:
    answer = await console(request).api.get(f"/jobs/{request.path_params['job_id']}")
    if not answer.ok:
        return await console(request).render_page(
            request,
            "job.html",
            status_code=answer.status,
            section="people",
            job={"error": answer.message},
            job_id=request.path_params["job_id"],
            done=True,
            back="",
        )
    done = answer.body.get("state") in ("done", "failed")
    context = {
        "section": "people",
        "job": answer.body,
        "job_id": answer.body.get("job_id"),
        "done": done,
        "back": request.query_params.get("back", ""),
    }
    if request.query_params.get("fragment"):
        return console(request).render(request, "job_status.html", **context)
    return await console(request).render_page(request, "job.html", **context)


@login_required
async def people_export(request: Request) -> Response:
    """The filtered list as CSV, every page of it, streamed (the chosen columns plus the person id)."""
    columns = view.chosen_columns(request.session.get("columns"))
    api = console(request).api
    params = request.query_params

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["person_id", *(view.COLUMNS[k].label for k in columns)])
        cursor = None
        while True:
            query = view.api_list_params(params, limit=EXPORT_PAGE)
            query.pop("cursor", None)
            if cursor:
                query["cursor"] = cursor
            answer = await api.get("/users", **query)
            if not answer.ok:
                writer.writerow([f"# stopped: {answer.message}"])
                break
            for user in answer.body.get("users", []):
                writer.writerow([user.get("person_id"), *(view.cell(user, k) for k in columns)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            cursor = answer.body.get("next_cursor")
            if not cursor:
                break
        if buffer.getvalue():
            yield buffer.getvalue()

    return StreamingResponse(
        rows(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": 'attachment; filename="people.csv"'}
    )


@login_required
async def create_user(request: Request) -> Response:
    fields = create_form_fields(await definitions(request))
    c = console(request)
    if request.method == "GET":
        return await c.render_page(request, "create_user.html", section="create", fields=fields, values={}, errors={}, message=None)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrftoken"}
    body, errors = create_body(fields, values)
    if not errors:
        answer = await c.api.call("POST", "/users", params={"wait": "true"}, json=body)
        if answer.ok:
            flash(request, "User created.")
            return RedirectResponse(c.path("profile", person_id=answer.body["person_id"]), status_code=303)
        known = {spec.name for spec in fields}
        for api_field, text in answer.field_errors().items():
            errors.setdefault(property_of_error_field(api_field) if property_of_error_field(api_field) in known else "_form", text)
        message = errors.pop("_form", None) or answer.message
    else:
        message = "Some fields need fixing."
    return await c.render_page(
        request,
        "create_user.html",
        status_code=422 if errors else 400,
        section="create",
        fields=fields,
        values=values,
        errors=errors,
        message=message,
    )


ROUTES = [
    Route("/people", people, name="people"),
    Route("/people/columns", people_columns, methods=["GET", "POST"], name="people_columns"),
    Route("/people/bulk", people_bulk, methods=["POST"], name="people_bulk"),
    Route("/people/export.csv", people_export, name="people_export"),
    Route("/people/new", create_user, methods=["GET", "POST"], name="create_user"),
    Route("/jobs/{job_id}", job, name="job"),
]
