"""Admin › Configs: every config with its variants, rules and rollout; create, edit (a new version each
time), enable/disable, delete with confirmation, and the version history. Every write goes through the
management API (/api/v1/configs), which validates it and names the field at fault."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console import configs_view as view
from api.console.app import console, flash, login_required


@login_required
async def configs(request: Request) -> Response:
    answer = await console(request).api.get("/configs")
    found = answer.body.get("configs", []) if answer.ok else []
    return await console(request).render_page(
        request,
        "configs.html",
        section="configs",
        configs=found,
        rules_text=view.rules_text,
        variants_text=view.variants_text,
        unavailable=None if answer.ok else answer.message,
    )


async def _form_page(
    request: Request, values: dict[str, str], editing: dict[str, Any] | None, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    variant_rows, rule_rows = view.row_counts(values)
    history = []
    if editing:
        versions = await console(request).api.get(f"/configs/{editing['key']}/versions")
        history = list(reversed(versions.body.get("versions", []))) if versions.ok else []
    return await console(request).render_page(
        request,
        "config_edit.html",
        status_code=status_code,
        section="configs",
        values=values,
        editing=editing,
        errors=errors or {},
        types=view.TYPES,
        variant_rows=range(variant_rows),
        rule_rows=range(rule_rows),
        history=history,
    )


@login_required
async def config_new(request: Request) -> Response:
    if request.method == "GET":
        return await _form_page(request, {"type": "string", "enabled": "on", "rule_rollout_0": "100"}, None)
    return await _save(request, None)


@login_required
async def config_edit(request: Request) -> Response:
    found = await console(request).api.get(f"/configs/{request.path_params['key']}")
    if not found.ok:
        flash(request, f"No config {request.path_params['key']}.", "error")
        return RedirectResponse("/admin/configs", status_code=303)
    if request.method == "GET":
        return await _form_page(request, view.form_values(found.body), found.body)
    return await _save(request, found.body)


async def _save(request: Request, editing: dict[str, Any] | None) -> Response:
    """Create or replace (If-Match: the version the form was opened at, so a concurrent edit is not lost)."""
    c = console(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrftoken"}
    body, errors, variant_rows, rule_rows = view.config_body(values)
    if not errors:
        if editing:
            body["key"] = editing["key"]
            answer = await c.api.call(
                "PUT", f"/configs/{editing['key']}", json=body, headers={"If-Match": str(values.get("version") or editing["version"])}
            )
        else:
            answer = await c.api.call("POST", "/configs", json=body)
        if answer.ok:
            flash(request, f"Config {body['key']} saved (version {answer.body['version']}).")
            return RedirectResponse("/admin/configs", status_code=303)
        errors = {view.form_field_of(f, variant_rows, rule_rows): m for f, m in answer.field_errors().items()} or {"key": answer.message}
    return await _form_page(request, values, editing, errors, status_code=422)


@login_required
async def config_toggle(request: Request) -> Response:
    key = request.path_params["key"]
    enabled = str((await request.form()).get("enabled")) == "true"
    answer = await console(request).api.call("PATCH", f"/configs/{key}", json={"enabled": enabled})
    flash(
        request,
        f"{key} {'enabled' if enabled else 'disabled'}." if answer.ok else f"{key}: {answer.message}",
        "info" if answer.ok else "error",
    )
    return RedirectResponse("/admin/configs", status_code=303)


@login_required
async def config_delete(request: Request) -> Response:
    key = request.path_params["key"]
    return await console(request).confirm_then_delete(
        request,
        what=f"the config {key}",
        section="configs",
        consequences=[f"Collectors stop serving {key}: an SDK that asks gets no value for it. Its versions stay in the history."],
        back="/admin/configs",
        api_path=f"/configs/{key}",
        done="/admin/configs",
    )


ROUTES = [
    Route("/admin/configs", configs, name="configs"),
    Route("/admin/configs/new", config_new, methods=["GET", "POST"], name="config_new"),
    Route("/admin/configs/{key}", config_edit, methods=["GET", "POST"], name="config_edit"),
    Route("/admin/configs/{key}/enabled", config_toggle, methods=["POST"], name="config_toggle"),
    Route("/admin/configs/{key}/delete", config_delete, methods=["GET", "POST"], name="config_delete"),
]
