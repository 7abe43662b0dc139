"""CSV import, the adapter: stream a file, check each row, and send the user commands the API's create and
PATCH send. Used by `footfall import` (footfall/cli.py) and `POST /api/v1/imports` (api/routers/imports.py).

    file ─► csv rows (streamed) ─► read_row (api/import_rows.py: 422-style errors → errors.csv)
         ─► chunks of CHUNK_ROWS: skip rows already applied (same command id) ─► find each key's user
         ─► unique values held by another user (409-style errors) ─► create / update commands ─► Kafka

A chunk's lookups and its send to Kafka run while the next chunk's rows are read and checked (one chunk in
flight at a time, awaited before the next starts), so the reads' and Kafka's round trips overlap the
per-row work instead of adding to it. Memory is bounded by two chunks: rows are read one at a time from
the file, errors go straight to the errors file, and only counts are kept. A row whose command the
projector already applied (the same key and the same content) sends nothing, so re-running a file changes
nothing; rows whose commands were sent but not applied yet are sent again with the same command ids (the
projector applies a command id once).
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from api.commands import Record
from api.errors import ApiError
from api.import_rows import (
    ERRORS_HEADER,
    CellVerdicts,
    ImportOptions,
    ImportRefused,
    ImportRow,
    RowError,
    plan_columns,
    read_row,
    uuid5_text,
)
from api.reads import live_persons_where
from api.user_model import UserCreate, UserPatch, create_records, update_records
from schemas.identity import PERSON_NAMESPACE
from schemas.properties import PropertyDefinition, unique_values
from schemas.topics import Topics

CHUNK_ROWS = 10_000  # rows looked up together: each lookup scans persons once, so fewer and larger chunks
STEP_ROWS = 250  # rows read between two yields to the event loop (and progress reports)
State = Literal["queued", "running", "done", "failed"]
Rows = Callable[[str, dict[str, Any]], Awaitable[list[dict[str, Any]]]]
Send = Callable[[list[Record]], Awaitable[None]]


@dataclass
class ImportReport:
    """What an import did so far: GET /api/v1/imports/{id} and the CLI's summary."""

    import_id: str
    state: State = "queued"
    rows_read: int = 0
    accepted: int = 0  # rows checked good (sent, or already applied)
    rejected: int = 0  # rows refused (each with one or more lines in errors.csv)
    unchanged: int = 0  # accepted rows whose command was already applied: nothing sent
    created: int = 0
    updated: int = 0
    bytes_read: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self.__dict__, default=str))


def lines_of(binary: IO[bytes], report: ImportReport) -> Iterator[str]:
    """The file's lines as text, counting bytes for the progress bar (a BOM at the start is dropped)."""
    first = True
    for line in binary:
        report.bytes_read += len(line)
        text = line.decode("utf-8", "replace")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def records_for(row: ImportRow, owner: str | None, dedupe: str, topics: Topics, at: datetime) -> list[Record]:
    """The commands the API sends: a create (and its claim) for a new user, an update for a known one."""
    if owner is not None:
        known_id = row.key if dedupe == "user_id" else None
        return update_records(topics, UserPatch(set=row.properties, stage=row.stage), owner, known_id, row.command_id, at, by="import")
    person_id = uuid5_text(PERSON_NAMESPACE, f"command:{row.command_id}")
    return create_records(topics, row.properties, create_body(row.stage), person_id, row.command_id, at, by="import")


@lru_cache(maxsize=256)
def create_body(stage: str | None) -> UserCreate:
    """What create_records reads of a create's body besides the properties (read_row checked those): its
    status, tags and stage. One validated body per stage, not one per row."""
    return UserCreate(stage=stage)


class Lookups:
    """The reads an import needs, a chunk at a time (one query per kind, server-side parameters)."""

    def __init__(self, rows: Rows):
        self.rows = rows

    async def applied(self, command_ids: list[str]) -> set[str]:
        found = await self.rows("SELECT command_id FROM {db}.user_commands WHERE command_id IN {ids:Array(String)}", {"ids": command_ids})
        return {r["command_id"] for r in found}

    async def owners(self, dedupe: str, keys: list[str]) -> dict[str, str]:
        """key → the live person that has it.

        A user id is mapped by the identity processor, which runs behind the profile projection: a user the
        projector has already created from a command may have no mapping yet. Such a user is found by the
        user_id property its create set, so a re-run or a changed row finds it instead of founding another."""
        if dedupe == "user_id":
            mapped = await self.rows(
                "SELECT distinct_id AS k, argMax(person_id, version) AS person_id FROM {db}.person_distinct_ids "
                "WHERE distinct_id IN {keys:Array(String)} GROUP BY distinct_id HAVING argMax(is_deleted, version) = 0",
                {"keys": keys},
            )
            owners = {r["k"]: r["person_id"] for r in mapped}
            unmapped = [key for key in keys if key not in owners]
            if unmapped:
                created = await self.rows(
                    "SELECT JSONExtractString(properties, 'user_id') AS k, person_id FROM "
                    + live_persons_where("JSONExtractString(properties, 'user_id') IN {keys:Array(String)}")
                    + " ORDER BY last_seen",
                    {"keys": unmapped},
                )
                owners.update((r["k"], r["person_id"]) for r in created)
            return owners
        if dedupe == "email":
            sql = (
                "SELECT lower(email) AS k, person_id FROM "
                + live_persons_where("lower(email) IN {keys:Array(String)}")
                + " ORDER BY is_identified, last_seen"
            )
        else:
            sql = (
                "SELECT JSONExtractString(properties, 'customer_id') AS k, person_id FROM "
                + live_persons_where("JSONExtractString(properties, 'customer_id') IN {keys:Array(String)}")
                + " ORDER BY last_seen"
            )
        return {r["k"]: r["person_id"] for r in await self.rows(sql, {"keys": keys})}  # the last row per key wins

    async def holders(self, name: str, values: list[Any]) -> dict[str, str]:
        """JSON text of a value → the person holding it, for one unique property (email: its own column)."""
        if name == "email":
            found = await self.rows(
                "SELECT email AS v, person_id FROM " + live_persons_where("email IN {vals:Array(String)}"),
                {"vals": [v for v in values if isinstance(v, str)]},
            )
            return {orjson.dumps(r["v"]).decode(): r["person_id"] for r in found}
        found = await self.rows(
            "SELECT JSONExtractRaw(properties, {k:String}) AS v, person_id FROM "
            + live_persons_where("JSONExtractRaw(properties, {k:String}) IN {vals:Array(String)}"),
            {"k": name, "vals": [orjson.dumps(v).decode() for v in values]},
        )
        return {r["v"]: r["person_id"] for r in found}


class CsvImport:
    """One import run. `send` is None for a dry run (everything is checked, nothing sent)."""

    def __init__(
        self,
        report: ImportReport,
        options: ImportOptions,
        definitions: Mapping[str, PropertyDefinition],
        rows: Rows,
        send: Send | None,
        topics: Topics,
        errors_path: Path,
        on_progress: Callable[[ImportReport], None] | None = None,
    ):
        self.report = report
        self.options = options
        self.definitions = definitions
        self.lookups = Lookups(rows)
        self.send = send
        self.topics = topics
        self.errors_path = errors_path
        self.on_progress = on_progress or (lambda _report: None)

    async def run(self, binary: IO[bytes]) -> ImportReport:
        report = self.report
        report.state, report.dry_run = "running", self.options.dry_run
        try:
            with open(self.errors_path, "w", newline="", encoding="utf-8") as errors_file:
                errors = csv.writer(errors_file)
                errors.writerow(ERRORS_HEADER)
                await self._rows(csv.reader(lines_of(binary, report)), errors)
            report.state = "done"
        except ImportRefused as refused:
            report.state, report.error = "failed", f"{refused.field}: {refused.message}"
            raise
        except csv.Error as exc:  # the file stops being CSV part-way: rows before it were imported
            report.state, report.error = "failed", f"line {report.rows_read + 2}: not CSV: {exc}"
            raise ImportRefused("body", "csv", report.error) from exc
        except Exception as exc:
            report.state, report.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            report.finished_at = datetime.now(UTC)
            self.on_progress(report)
        return report

    async def _rows(self, reader: Iterator[list[str]], errors) -> None:
        report = self.report
        header = next(reader, None)
        if header is None:
            raise ImportRefused("body", "header", "the file is empty: the first line names the columns")
        plan = plan_columns(header, self.options, self.definitions)
        report.ignored_columns = plan.ignored
        chunk: list[ImportRow] = []
        verdicts = CellVerdicts()
        in_flight: asyncio.Task[None] | None = None  # the previous chunk: looked up and sent while rows are read
        try:
            for number, cells in enumerate(reader, start=2):
                if not any(cell.strip() for cell in cells):
                    continue  # a blank line
                report.rows_read += 1
                outcome = read_row(number, cells, plan, self.options, self.definitions, verdicts)
                if isinstance(outcome, list):
                    self._reject(errors, outcome)
                else:
                    chunk.append(outcome)
                if report.rows_read % STEP_ROWS == 0:
                    self.on_progress(report)
                    await asyncio.sleep(0)  # the chunk in flight moves on; an API process serves requests
                if len(chunk) >= CHUNK_ROWS:
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.create_task(self._chunk(chunk, errors, plan.column_of))
                    chunk = []
            if in_flight is not None:
                await in_flight
            in_flight = None
            if chunk:
                await self._chunk(chunk, errors, plan.column_of)
        except asyncio.CancelledError:
            if in_flight is not None:
                in_flight.cancel()
            raise
        except Exception:
            if in_flight is not None:  # the chunk already started ends as it would have without the overlap
                await asyncio.gather(in_flight, return_exceptions=True)
            raise

    def _reject(self, errors, row_errors: Sequence[RowError]) -> None:
        self.report.rejected += 1
        errors.writerows(e.as_row() for e in row_errors)

    async def _chunk(self, chunk: list[ImportRow], errors, column_of: Callable[[str], str]) -> None:
        """Look the chunk's users up, refuse unique values held elsewhere, send the rest's commands."""
        report, dedupe = self.report, self.options.dedupe
        applied = await self.lookups.applied([row.command_id for row in chunk])
        # A row whose command was applied sends nothing, so it can conflict with nobody: unchanged.
        pending = [row for row in chunk if row.command_id not in applied]
        report.accepted += len(chunk) - len(pending)
        report.unchanged += len(chunk) - len(pending)
        owners = await self.lookups.owners(dedupe, sorted({row.key for row in pending})) if pending else {}
        conflicts = await self._conflicts(pending, owners, dedupe, column_of)
        records: list[Record] = []
        at = datetime.now(UTC)
        for row in pending:
            if row.row in conflicts:
                self._reject(errors, conflicts[row.row])
                continue
            report.accepted += 1
            owner = owners.get(row.key)
            report.updated += owner is not None
            report.created += owner is None
            records += records_for(row, owner, dedupe, self.topics, at)
        if records and self.send is not None:
            await self.send(records)
        self.on_progress(report)

    async def _conflicts(
        self, chunk: list[ImportRow], owners: dict[str, str], dedupe: str, column_of: Callable[[str], str]
    ) -> dict[int, list[RowError]]:
        """Rows setting a unique property's value that another user holds (the API's 409), per row."""
        wanted: dict[str, list[Any]] = {}
        for row in chunk:
            for name, value in unique_values(self.definitions, row.properties).items():
                if name != dedupe:
                    wanted.setdefault(name, []).append(value)
        conflicts: dict[int, list[RowError]] = {}
        for name, values in wanted.items():
            holders = await self.lookups.holders(name, values)
            if not holders:
                continue
            for row in chunk:
                value = row.properties.get(name)
                holder = holders.get(orjson.dumps(value).decode()) if value is not None else None
                if holder is not None and holder != owners.get(row.key):
                    conflicts.setdefault(row.row, []).append(
                        RowError(row.row, column_of(name), str(value), "unique", f"{name} {value!r} already belongs to user {holder}")
                    )
        return conflicts


def refused_as_api_error(refused: ImportRefused) -> ApiError:
    return ApiError.of(422, refused.field, refused.rule, refused.message)
