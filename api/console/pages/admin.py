"""Admin pages. Each appears in the navigation once its API answers (Sources needs none: it shows the
collector's configured write keys)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console import definitions_view as dview
from api.console.app import console, flash, login_required
from api.console.forms import property_of_error_field
from api.console.snippet import browser_snippet, server_examples

# API path → (console path, label, section): shown once GET on the API path answers 200.
OPTIONAL_SECTIONS = (
    ("/property-definitions", "/admin/properties", "Properties", "properties"),
    ("/configs", "/admin/configs", "Configs", "configs"),
    ("/imports/-", "/admin/imports", "Imports", "imports"),
    ("/lifecycle-stages", "/admin/stages", "Lifecycle stages", "stages"),
    ("/lists", "/admin/lists", "Lists", "lists"),
)
RECHECK_SECONDS = 60.0


class ApiPresence:
    """Which optional APIs answer; a present one is remembered, an absent one asked again after a minute."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.checked: dict[str, float] = {}

    async def has(self, request: Request, api_path: str) -> bool:
        if api_path in self.present:
            return True
        now = time.monotonic()
        if now - self.checked.get(api_path, -RECHECK_SECONDS) < RECHECK_SECONDS:
            return False
        self.checked[api_path] = now
        answer = await console(request).api.get(api_path)
        # 200, or a 404 that the route itself gave (an unknown id), means the API is there.
        if answer.status == 200 or (answer.status == 404 and (answer.field_errors().keys() - {"path"})):
            self.present.add(api_path)
            return True
        return False


PRESENCE = ApiPresence()


async def nav_items(request: Request) -> list[dict[str, str]]:
    items = [
        {"url": url, "label": label, "section": section}
        for api_path, url, label, section in OPTIONAL_SECTIONS
        if await PRESENCE.has(request, api_path)
    ]
    return items + [{"url": "/admin/sources", "label": "Sources", "section": "sources"}]


def collector_url(request: Request) -> str:
    c = console(request)
    if c.config.collector_url:
        return c.config.collector_url.rstrip("/")
    settings = c.settings
    return f"http://{settings.collector_host}:{settings.collector_port}" if settings is not None else "http://127.0.0.1:8080"


@login_required
async def sources(request: Request) -> Response:
    url = collector_url(request)
    listed = [
        {"id": source_id, "write_key": key, "snippet": browser_snippet(url, key), "examples": server_examples(url, key)}
        for source_id, key in console(request).sources
    ]
    return await console(request).render_page(request, "sources.html", section="sources", sources=listed, collector_url=url)


async def _definitions_page(request: Request, status_code: int = 200, **context) -> Response:
    answer = await console(request).api.get("/property-definitions")
    found = answer.body.get("definitions", []) if answer.ok and isinstance(answer.body, dict) else []
    context.setdefault("values", {"type": "string"})
    context.setdefault("errors", {})
    context.setdefault("editing", None)
    return await console(request).render_page(
        request,
        "definitions.html",
        status_code=status_code,
        section="properties",
        definitions=found,
        types=dview.TYPES,
        constraints_text=dview.constraints_text,
        unavailable=None if answer.ok else answer.message,
        **context,
    )


@login_required
async def definitions(request: Request) -> Response:
    """List, create (POST) and, with ?edit=<name>, edit a definition."""
    c = console(request)
    if request.method == "GET":
        editing = request.query_params.get("edit")
        if editing:
            found = await c.api.get(f"/property-definitions/{editing}")
            if found.ok:
                return await _definitions_page(request, values=dview.form_values(found.body), editing=found.body)
        return await _definitions_page(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrftoken"}
    body, errors = dview.definition_body(values)
    name = values.get("name", "").strip()
    editing = values.get("editing") or None
    if not errors:
        if editing:
            body["version"] = int(values.get("version") or 0) or None
            answer = await c.api.call("PUT", f"/property-definitions/{editing}", json=body)
        else:
            answer = await c.api.call("POST", "/property-definitions", json={"name": name, **body})
        if answer.ok:
            flash(request, f"Property {editing or name} saved.")
            return RedirectResponse("/admin/properties", status_code=303)
        errors = {property_of_error_field(k) or "name": v for k, v in answer.field_errors().items()} or {"name": answer.message}
    current = None
    if editing:
        found = await c.api.get(f"/property-definitions/{editing}")
        current = found.body if found.ok else {"name": editing, "version": values.get("version")}
    return await _definitions_page(request, status_code=422, values=values, errors=errors, editing=current)


@login_required
async def definition_delete(request: Request) -> Response:
    name = request.path_params["name"]
    return await console(request).confirm_then_delete(
        request,
        what=f"the property {name}",
        section="properties",
        consequences=[f"The definition of {name} goes; values already in profiles stay, unchecked from now on."],
        back="/admin/properties",
        api_path=f"/property-definitions/{name}",
        done="/admin/properties",
    )


ROUTES: list = [
    Route("/admin/sources", sources, name="sources"),
    Route("/admin/properties", definitions, methods=["GET", "POST"], name="definitions"),
    Route("/admin/properties/{name}/delete", definition_delete, methods=["GET", "POST"], name="definition_delete"),
]
