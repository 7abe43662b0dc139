"""CSV import, the pure part: which column writes which property, and what one row becomes. No I/O.

Columns map to properties by header (the property's name, or the header lower-cased with spaces and
dashes as underscores: "First Name" → first_name), or by an explicit mapping (`col=prop`, which wins).
A column that names no defined property is ignored, unless the import is asked to take unknown columns
(`include_unknown`): then it becomes a custom property of that (normalised) name.

A row is checked like an API write (schemas/properties.py, from text: "42" is an integer, "yes" a
boolean): an empty cell changes nothing, except in a required property's column, where it is refused. The
dedupe key (user_id, email or customer_id) must be in every row: it says which user the row is. Each
broken rule is one error (row, column, value, rule) for errors.csv.

A row's command id derives from the dedupe key and the row's content (its checked properties, sorted):
importing the same row again is the same command, which the projector has already applied; a changed
row is a new command that updates the user.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from api.user_model import check_identifier_values
from schemas.properties import Checked, PropertyDefinition, check_values
from schemas.user_commands import IDENTIFIERS, email_key

DedupeKey = Literal["user_id", "email", "customer_id"]
DEDUPE_KEYS: tuple[DedupeKey, ...] = ("user_id", "email", "customer_id")
IMPORT_NAMESPACE = uuid.UUID("0b7d3f52-6c1e-4a43-8f0e-5d2b9b7e3c61")
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
MAX_KEPT_VALUE = 1000  # characters of a refused value kept in errors.csv
MAX_CELL_VERDICTS = 50_000  # cells whose checks an import keeps (CellVerdicts)
MAX_STAGE_LENGTH = 64  # as the API's create and PATCH bodies take it (api/user_model.py)


class ImportRefused(Exception):
    """The whole file cannot be imported (a mapping names no column, no dedupe column): 422 before any row."""

    def __init__(self, field: str, rule: str, message: str):
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message


@dataclass(frozen=True)
class ImportOptions:
    dedupe: DedupeKey = "user_id"
    mapping: Mapping[str, str] = field(default_factory=dict)  # column header → property name
    include_unknown: bool = False
    dry_run: bool = False
    stages: frozenset[str] | None = None  # the lifecycle stage ids a `stage` column may hold (None: not checked)


@dataclass(frozen=True)
class ColumnPlan:
    header: tuple[str, ...]
    properties: tuple[str | None, ...]  # per column: the property it writes, None when ignored

    @property
    def ignored(self) -> list[str]:
        return [name for name, prop in zip(self.header, self.properties, strict=True) if prop is None]

    def column_of(self, prop: str) -> str:
        return next((name for name, p in zip(self.header, self.properties, strict=True) if p == prop), prop)


@dataclass(frozen=True)
class RowError:
    row: int  # the line of the file, the header being line 1 (as a spreadsheet numbers it)
    column: str
    value: str
    rule: str
    reason: str

    def as_row(self) -> list[str]:
        return [str(self.row), self.column, self.value[:MAX_KEPT_VALUE], self.rule, self.reason]


ERRORS_HEADER = ["row", "column", "value", "rule", "reason"]
STAGE_COLUMN = "stage"  # not a property: the user's lifecycle stage (schemas/stages.py)
STAGE_HEADERS = ("stage", "lifecycle_stage")


@dataclass(frozen=True)
class ImportRow:
    row: int
    key: str  # the dedupe key's value
    properties: dict[str, Any]  # checked and typed
    command_id: str
    stage: str | None = None  # the `stage` column: the lifecycle stage to set


def normalised_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def plan_columns(header: Sequence[str], options: ImportOptions, definitions: Mapping[str, PropertyDefinition]) -> ColumnPlan:
    """Which property each column writes; ImportRefused when the mapping or the dedupe column does not fit."""
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ImportRefused("header", "unique", f"columns named more than once: {', '.join(duplicated)}")
    for column, prop in options.mapping.items():
        if column not in names:
            raise ImportRefused(f"mapping.{column}", "column", f"the file has no column {column!r} (it has {', '.join(names)})")
        if not PROPERTY_NAME.match(prop):
            raise ImportRefused(f"mapping.{column}", "property_name", f"{prop!r} is not a property name")
    properties: list[str | None] = []
    for name in names:
        if name not in options.mapping and name not in definitions and normalised_header(name) in STAGE_HEADERS:
            properties.append(STAGE_COLUMN)
        elif name in options.mapping:
            properties.append(options.mapping[name])
        elif name in definitions:
            properties.append(name)
        elif (normal := normalised_header(name)) in definitions or (options.include_unknown and PROPERTY_NAME.match(normal)):
            properties.append(normal)
        else:
            properties.append(None)
    targets = [p for p in properties if p is not None]
    if len(set(targets)) != len(targets):
        duplicated = sorted({p for p in targets if targets.count(p) > 1})
        raise ImportRefused("mapping", "unique", f"more than one column writes {', '.join(duplicated)}")
    if options.dedupe not in targets:
        raise ImportRefused(
            "dedupe", "column", f"no column holds the dedupe key {options.dedupe}; map one with --mapping <column>={options.dedupe}"
        )
    return ColumnPlan(tuple(names), tuple(properties))


class CellVerdicts:
    """The checks of cells an import already saw, by property and text: most columns repeat a few values
    (plans, countries, companies, ages), so each distinct one is checked once. Unique properties (ids,
    emails) never repeat and are not kept; at most MAX_CELL_VERDICTS are kept, so memory stays bounded.

    A property's check does not depend on the other properties of the write, so the row's check is its
    cells' checks in order: the same values and errors as check_values on the whole row."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], Checked] = {}

    def check(self, definitions: Mapping[str, PropertyDefinition], written: Mapping[str, str]) -> Checked:
        checked = Checked()
        for name, text in written.items():
            one = self._kept.get((name, text))
            if one is None:
                one = check_values(definitions, {name: text}, from_text=True)
                d = definitions.get(name)
                if len(self._kept) < MAX_CELL_VERDICTS and not (d is not None and d.unique):
                    self._kept[(name, text)] = one
            checked.values.update(one.values)
            checked.errors += one.errors
        return checked


def command_id_of(dedupe: str, key: str, properties: Mapping[str, Any]) -> str:
    content = orjson.dumps(properties, option=orjson.OPT_SORT_KEYS).decode()
    return uuid5_text(IMPORT_NAMESPACE, f"{dedupe}\x00{key}\x00{content}")


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """str(uuid.uuid5(namespace, name)) without building a UUID object: two per imported row."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).hexdigest()
    variant = "89ab"[int(digest[16], 16) & 0x3]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def read_row(
    number: int,
    cells: Sequence[str],
    plan: ColumnPlan,
    options: ImportOptions,
    definitions: Mapping[str, PropertyDefinition],
    verdicts: CellVerdicts | None = None,
) -> ImportRow | list[RowError]:
    """One data row: the checked row, or every rule it breaks. `verdicts`: an import's memory of cells
    already checked (the same answer, sooner)."""
    if len(cells) != len(plan.header):
        return [RowError(number, "", ",".join(cells), "columns", f"{len(cells)} cells; the header has {len(plan.header)}")]
    errors: list[RowError] = []
    written: dict[str, str] = {}
    for column, prop, cell in zip(plan.header, plan.properties, cells, strict=True):
        if prop is None:
            continue
        if cell.strip():
            written[prop] = cell.strip()
        elif (d := definitions.get(prop)) is not None and d.required and not d.deleted:
            errors.append(RowError(number, column, cell, "required", f"{prop} is required and cannot be empty"))
    stage = written.pop(STAGE_COLUMN, None)
    if stage is not None and options.stages is not None and stage not in options.stages:
        errors.append(RowError(number, plan.column_of(STAGE_COLUMN), stage, "one_of", f"{stage!r} is not a lifecycle stage"))
    elif stage is not None and len(stage) > MAX_STAGE_LENGTH:
        errors.append(
            RowError(number, plan.column_of(STAGE_COLUMN), stage, "max_length", f"a stage id is at most {MAX_STAGE_LENGTH} characters")
        )
    checked = check_values(definitions, written, from_text=True) if verdicts is None else verdicts.check(definitions, written)
    errors += [
        RowError(number, plan.column_of(e.property), written.get(e.property, ""), e.rule, f"{e.property} {e.reason}")
        for e in checked.errors
    ]
    properties = checked.values
    if "email" in properties and isinstance(properties["email"], str):
        properties["email"] = email_key(properties["email"])
    errors += [
        RowError(number, plan.column_of(e.field), str(properties.get(e.field, "")), e.rule, e.message)
        for e in check_identifier_values({k: v for k, v in properties.items() if k in IDENTIFIERS})
    ]
    key = properties.get(options.dedupe)
    if not errors and not key:
        errors.append(RowError(number, plan.column_of(options.dedupe), "", "required", f"the dedupe key {options.dedupe} is empty"))
    if errors:
        return errors
    content = {**properties, "$stage": stage} if stage else properties
    return ImportRow(number, str(key), properties, command_id_of(options.dedupe, str(key), content), stage)
