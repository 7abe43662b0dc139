"""Imports: upload a CSV, map its columns to properties, dry run or import, follow the progress, download the
errors file. The import itself is POST /api/v1/imports (api/routers/imports.py); this page holds the upload
between the mapping step and the start, in `<data_dir>/console-uploads/`."""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.console.app import console, flash, login_required
from api.console.pages.people import definitions

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
DEDUPE_KEYS = ("user_id", "email", "customer_id")
CHUNK = 1 << 20


def _uploads(request: Request) -> Path:
    settings = console(request).settings
    folder = Path(settings.data_dir if settings is not None else ".footfall") / "console-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def header_of(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next(csv.reader(io.StringIO(handle.readline())), [])


@login_required
async def imports(request: Request) -> Response:
    return await console(request).render_page(request, "imports.html", section="imports", step="upload", dedupe_keys=DEDUPE_KEYS)


@login_required
async def upload(request: Request) -> Response:
    """Keep the file, read its header, and show the mapping step."""
    form = await request.form()
    file = form.get("file")
    if file is None or not hasattr(file, "read") or not getattr(file, "filename", ""):
        flash(request, "Choose a CSV file.", "error")
        return RedirectResponse("/admin/imports", status_code=303)
    upload_id = uuid.uuid4().hex
    path = _uploads(request) / f"{upload_id}.csv"
    with open(path, "wb") as out:
        while chunk := await file.read(CHUNK):
            out.write(chunk)
    columns = header_of(path)
    if not columns:
        path.unlink(missing_ok=True)
        flash(request, "That file has no header row.", "error")
        return RedirectResponse("/admin/imports", status_code=303)
    names = sorted(d["name"] for d in await definitions(request))
    return await console(request).render_page(
        request,
        "imports.html",
        section="imports",
        step="map",
        upload_id=upload_id,
        filename=file.filename,
        columns=columns,
        property_names=names,
        dedupe=str(form.get("dedupe") or "user_id"),
        dedupe_keys=DEDUPE_KEYS,
    )


def mapping_params(form: Any) -> list[str]:
    """`column=property` for each column the person mapped to a property other than its own header."""
    pairs = []
    for key, value in form.multi_items():
        if key.startswith("map.") and str(value).strip() and str(value) != key[4:]:
            pairs.append(f"{key[4:]}={value}")
    return pairs


@login_required
async def start(request: Request) -> Response:
    form = await request.form()
    upload_id = str(form.get("upload_id") or "")
    path = _uploads(request) / f"{upload_id}.csv"
    if not UPLOAD_ID.match(upload_id) or not path.exists():
        flash(request, "That upload is gone; upload the file again.", "error")
        return RedirectResponse("/admin/imports", status_code=303)
    dedupe = str(form.get("dedupe") or "user_id")
    params: list[tuple[str, str]] = [("dedupe", dedupe if dedupe in DEDUPE_KEYS else "user_id")]
    params += [("mapping", pair) for pair in mapping_params(form)]
    if form.get("include_unknown"):
        params.append(("include_unknown", "true"))
    dry_run = bool(form.get("dry_run"))
    if dry_run:
        params.append(("dry_run", "true"))
    answer = await console(request).api.call(
        "POST", "/imports", params=params, content=path.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    if not dry_run:
        path.unlink(missing_ok=True)
    if not answer.ok:
        flash(request, f"Import refused: {answer.message}", "error")
        return RedirectResponse("/admin/imports", status_code=303)
    return RedirectResponse(f"/admin/imports/{answer.body['import_id']}", status_code=303)


@login_required
async def progress(request: Request) -> Response:
    import_id = request.path_params["import_id"]
    answer = await console(request).api.get(f"/imports/{import_id}")
    report = answer.body if answer.ok else {"state": "unknown", "error": answer.message}
    done = report.get("state") not in ("queued", "running")
    context = {"section": "imports", "report": report, "import_id": import_id, "done": done}
    if request.query_params.get("fragment"):
        return console(request).render(request, "import_status.html", **context)
    return await console(request).render_page(request, "imports.html", step="progress", **context)


@login_required
async def errors_file(request: Request) -> Response:
    import_id = request.path_params["import_id"]
    answer = await console(request).api.call("GET", f"/imports/{import_id}/errors.csv")
    if not answer.ok:
        flash(request, f"No errors file: {answer.message}", "error")
        return RedirectResponse(f"/admin/imports/{import_id}", status_code=303)
    return Response(
        answer.body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="import-{import_id}-errors.csv"'}
    )


ROUTES = [
    Route("/admin/imports", imports, name="imports"),
    Route("/admin/imports/upload", upload, methods=["POST"], name="imports_upload"),
    Route("/admin/imports/start", start, methods=["POST"], name="imports_start"),
    Route("/admin/imports/{import_id}", progress, name="import_progress"),
    Route("/admin/imports/{import_id}/errors.csv", errors_file, name="import_errors"),
]
