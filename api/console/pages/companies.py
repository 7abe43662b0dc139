"""Companies: the searchable, sortable list with Create company; a company's page with its properties and
members (add a member with a role and primary flag, end a membership, set or remove a property, delete).
Every change goes through /api/v1/companies (?wait=true), so the page shows it after the redirect."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console import people_view as view
from api.console.app import console, flash, login_required

SORTS = (("name", "Name"), ("-member_count", "Most members"), ("-last_seen", "Last seen"), ("-created_at", "Newest"))


def _path(company_id: str) -> str:
    return f"/companies/{quote(company_id, safe='')}"


def _failure(answer) -> str:
    return next(iter(answer.field_errors().values()), answer.message)


@login_required
async def companies(request: Request) -> Response:
    params = request.query_params
    sort = params.get("sort") if params.get("sort") in dict(SORTS) else "name"
    answer = await console(request).api.get("/companies", q=params.get("q"), sort=sort, limit=50, cursor=params.get("cursor"))
    rows, next_cursor = (answer.body.get("companies", []), answer.body.get("next_cursor")) if answer.ok else ([], None)
    query = {k: v for k, v in (("q", params.get("q")), ("sort", sort)) if v}
    return await console(request).render_page(
        request,
        "companies.html",
        section="companies",
        companies=rows,
        q=params.get("q", ""),
        sort=sort,
        sorts=SORTS,
        error=None if answer.ok else answer.message,
        short_time=view.short_time,
        company_path=_path,
        next_link=f"?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
    )


@login_required
async def create_company(request: Request) -> Response:
    form = await request.form()
    body = {k: v for k in ("company_id", "name", "domain") if (v := str(form.get(k) or "").strip())}
    answer = await console(request).api.call("POST", "/companies", params={"wait": "true"}, json=body)
    if not answer.ok:
        flash(request, f"Not created: {_failure(answer)}", "error")
        return RedirectResponse("/companies", status_code=303)
    flash(request, f"Company {body.get('name') or answer.body['company_id']} created.")
    return RedirectResponse(_path(answer.body["company_id"]), status_code=303)


@login_required
async def company(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    api = console(request).api
    found = await api.get(_path(company_id))
    if not found.ok:
        flash(request, "No such company (deleted, or never created).", "error")
        return RedirectResponse("/companies", status_code=303)
    include_ended = request.query_params.get("ended") == "1"
    members = await api.get(f"{_path(company_id)}/members", include_ended="true" if include_ended else None, limit=1000)
    return await console(request).render_page(
        request,
        "company.html",
        section="companies",
        company=found.body,
        members=members.body.get("members", []) if members.ok else [],
        include_ended=include_ended,
        short_time=view.short_time,
        company_path=_path(company_id),
    )


async def _change(request: Request, method: str, suffix: str, body: dict[str, Any] | None, done: str) -> Response:
    company_id = request.path_params["company_id"]
    answer = await console(request).api.call(method, f"{_path(company_id)}{suffix}", params={"wait": "true"}, json=body)
    flash(request, done if answer.ok else f"{done.split(':')[0].rstrip('.')} failed: {_failure(answer)}", "info" if answer.ok else "error")
    return RedirectResponse(_path(company_id), status_code=303)


@login_required
async def company_add_member(request: Request) -> Response:
    form = await request.form()
    body: dict[str, Any] = {"user": str(form.get("user") or "").strip(), "primary": form.get("primary") == "on"}
    if role := str(form.get("role") or "").strip():
        body["role"] = role
    return await _change(request, "POST", "/members", body, f"Member added: {body['user']}.")


@login_required
async def company_end_member(request: Request) -> Response:
    person_id = request.path_params["person_id"]
    return await _change(request, "POST", f"/members/{quote(person_id, safe='')}/end", None, "Membership ended.")


@login_required
async def company_property(request: Request) -> Response:
    form = await request.form()
    name, value = str(form.get("name") or "").strip(), str(form.get("value") or "")
    body = {"unset": [name]} if form.get("remove") else {"set": {name: value}}
    return await _change(request, "PATCH", "", body, f"Property {name} {'removed' if form.get('remove') else 'saved'}.")


@login_required
async def company_delete(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    return await console(request).confirm_then_delete(
        request,
        what=f"the company {company_id}",
        section="companies",
        consequences=["Its memberships end; its users stay, with their own properties."],
        back=_path(company_id),
        api_path=_path(company_id),
        api_params={"wait": "true"},  # the list it returns to no longer shows it
        done="/companies",
    )


ROUTES = [
    Route("/companies", companies, name="companies"),
    Route("/companies/new", create_company, methods=["POST"], name="create_company"),
    Route("/companies/{company_id}", company, name="company"),
    Route("/companies/{company_id}/members", company_add_member, methods=["POST"], name="company_add_member"),
    Route("/companies/{company_id}/members/{person_id}/end", company_end_member, methods=["POST"], name="company_end_member"),
    Route("/companies/{company_id}/properties", company_property, methods=["POST"], name="company_property"),
    Route("/companies/{company_id}/delete", company_delete, methods=["GET", "POST"], name="company_delete"),
]
