"""/api/v1/imports: import users from CSV (a `text/csv` body), follow the import, download its errors.

The body is streamed to a file under the data directory (never held in memory), its header is checked
at once (422 for a mapping that does not fit), and the rows are imported in the background
(api/imports.py): `GET /api/v1/imports/{id}` gives the state and the counts, `errors.csv` each refused
row's column, value and rule. Imports are remembered by the API process that ran them.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, ORJSONResponse

from api.definitions import Definitions
from api.errors import ApiError
from api.import_rows import DEDUPE_KEYS, DedupeKey, ImportOptions, ImportRefused, plan_columns
from api.imports import CsvImport, ImportReport, refused_as_api_error

router = APIRouter(tags=["imports"])
log = logging.getLogger(__name__)
MAX_IMPORT_BYTES = 2 * 1024**3


def _imports(request: Request) -> dict[str, tuple[ImportReport, Path]]:
    state = request.app.state
    if not hasattr(state, "imports"):
        state.imports = {}
        state.import_tasks = set()
    return state.imports


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`col=prop` pairs (the CLI's --mapping and the API's ?mapping=) as a dict; 422 for a malformed one."""
    mapping = {}
    for pair in pairs:
        column, equals, prop = pair.partition("=")
        if not equals or not column.strip() or not prop.strip():
            raise ImportRefused("mapping", "format", f"{pair!r}: a mapping is <column>=<property>")
        mapping[column.strip()] = prop.strip()
    return mapping


async def _stream_to(request: Request, path: Path) -> int:
    size = 0
    with open(path, "wb") as out:
        async for piece in request.stream():
            size += len(piece)
            if size > MAX_IMPORT_BYTES:
                raise ApiError.of(413, "body", "max_size", f"an import is at most {MAX_IMPORT_BYTES} bytes")
            out.write(piece)
    return size


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace", newline="") as text:
        try:
            first = next(csv.reader(text), None)
        except csv.Error as exc:
            raise ImportRefused("body", "csv", f"the header line is not CSV: {exc}") from None
    if not first:
        raise ImportRefused("body", "header", "the file is empty: the first line names the columns")
    first[0] = first[0].removeprefix("\ufeff")
    return first


@router.post("/imports", status_code=202)
async def start_import(
    request: Request,
    dedupe: Annotated[DedupeKey, Query(description=f"which column says who a row is: {', '.join(DEDUPE_KEYS)}")] = "user_id",
    mapping: Annotated[list[str], Query(description="<column>=<property>, repeatable")] = [],  # noqa: B006 - FastAPI reads the default
    include_unknown: Annotated[bool, Query(description="columns that name no defined property become custom properties")] = False,
    dry_run: Annotated[bool, Query(description="check every row, send nothing")] = False,
) -> ORJSONResponse:
    """Import users from a CSV body (Content-Type: text/csv): a job to follow at GET /api/v1/imports/{id}."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() not in ("text/csv", "application/csv"):
        raise ApiError.of(415, "content-type", "text_csv", "send the file as the body with Content-Type: text/csv")
    definitions: Definitions = request.app.state.definitions
    await definitions.ready()
    imports = _imports(request)
    import_id = str(uuid.uuid4())
    folder = Path(request.app.state.settings.data_dir) / "imports" / import_id
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "upload.csv"
    await _stream_to(request, source)
    try:
        options = ImportOptions(
            dedupe=dedupe,
            mapping=parse_mapping(mapping),
            include_unknown=include_unknown,
            dry_run=dry_run,
            stages=await request.app.state.stages.ids(),
        )
        rules = definitions.current
        plan_columns(_header(source), options, rules)
    except ImportRefused as refused:
        raise refused_as_api_error(refused) from None
    report = ImportReport(import_id, dry_run=dry_run)
    errors_path = folder / "errors.csv"
    imports[import_id] = (report, errors_path)
    state = request.app.state
    job = CsvImport(report, options, rules, state.reader.rows, None if dry_run else state.bus.send, state.settings.topics, errors_path)
    task = asyncio.create_task(_run(job, source))
    state.import_tasks.add(task)
    task.add_done_callback(state.import_tasks.discard)
    return ORJSONResponse({"import_id": import_id, "state": report.state, "url": f"/api/v1/imports/{import_id}"}, 202)


async def _run(job: CsvImport, source: Path) -> None:
    try:
        with open(source, "rb") as binary:
            await job.run(binary)
    except Exception:  # noqa: BLE001 - the report says failed and why
        log.warning("import %s failed: %s", job.report.import_id, job.report.error)
    finally:
        source.unlink(missing_ok=True)


@router.get("/imports/{import_id}")
async def get_import(request: Request, import_id: str) -> dict[str, Any]:
    """An import's state (queued, running, done, failed) and counts: rows read, accepted, rejected, unchanged."""
    found = _imports(request).get(import_id)
    if found is None:
        raise ApiError.of(404, "import_id", "exists", f"no import {import_id!r} in this API process")
    return {**found[0].as_json(), "errors_url": f"/api/v1/imports/{import_id}/errors.csv"}


@router.get("/imports/{import_id}/errors.csv", response_class=FileResponse)
async def import_errors(request: Request, import_id: str) -> FileResponse:
    """Each refused row's problems: row (file line, header = 1), column, value, rule, reason."""
    found = _imports(request).get(import_id)
    if found is None or not found[1].exists():
        raise ApiError.of(404, "import_id", "exists", f"no import {import_id!r} in this API process")
    return FileResponse(found[1], media_type="text/csv", filename=f"import-{import_id}-errors.csv")
