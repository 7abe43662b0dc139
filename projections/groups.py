"""Stages and lists as tables: the rows of `stage_history` and `list_members` that a persons row implies, the
definition tables, and the stage rules' moves. Pure: no I/O.

Both tables are rewritten whole for a person whenever its persons row is written (same version), from the
stage and list writes its state keeps, so they follow the profile exactly: a merged-away person's rows are
hidden (is_deleted), a write that turned out not to take effect is marked so, and a replay rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from projections.profiles import PERSONS, list_writes, stage_writes
from projections.rows import TableSpec, epoch_ms
from schemas.lists import ListDefinition, memberships
from schemas.person_properties import targeting_properties
from schemas.stages import StageDefinition, StageRules, fired_rules, move_command, move_command_id, walk_stages
from schemas.user_commands import UserCommand

STAGE_HISTORY = TableSpec(
    "stage_history",
    (
        ("person_id", "String"),
        ("command_id", "String"),
        ("stage", "LowCardinality(String)"),
        ("from_stage", "LowCardinality(String)"),
        ("entered_at", "DateTime64(3, 'UTC')"),
        ("by", "LowCardinality(String)"),
        ("reason", "String"),
        ("effective", "Bool"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

LIST_MEMBERS = TableSpec(
    "list_members",
    (
        ("list_id", "String"),
        ("person_id", "String"),
        ("added_command_id", "String"),
        ("added_at", "DateTime64(3, 'UTC')"),
        ("added_by", "String"),
        ("removed_at", "Nullable(DateTime64(3, 'UTC'))"),
        ("removed_by", "String"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

LISTS = TableSpec(
    "lists",
    (
        ("list_id", "String"),
        ("name", "String"),
        ("created_at", "DateTime64(3, 'UTC')"),
        ("updated_at", "DateTime64(3, 'UTC')"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

LIFECYCLE_STAGES = TableSpec(
    "lifecycle_stages",
    (
        ("stage_id", "String"),
        ("name", "String"),
        ("position", "Int32"),
        ("rule", "String"),
        ("moved_to", "String"),
        ("updated_at", "DateTime64(3, 'UTC')"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

_COLUMN = {name: index for index, name in enumerate(PERSONS.column_names)}


def _stored(row: list, key: str) -> dict[str, Any]:
    """One part of the row's `_state` (only parsed when the state has it: most persons have no stage or list)."""
    state = row[_COLUMN["_state"]]
    return orjson.loads(state).get(key, {}) if f'"{key}"' in state else {}


def group_rows(person_rows: Iterable[list]) -> tuple[list[list], list[list]]:
    """(stage_history rows, list_members rows) for these persons rows."""
    history: list[list] = []
    members: list[list] = []
    for row in person_rows:
        person_id, version, hidden = row[_COLUMN["person_id"]], row[_COLUMN["version"]], row[_COLUMN["is_deleted"]]
        if stages := _stored(row, "stages"):
            for entry in walk_stages(stage_writes(stages))[1]:
                w = entry.write
                history.append([person_id, w.command_id, w.stage, entry.from_stage, w.at, w.by, w.reason, entry.effective, version, hidden])
        if lists := _stored(row, "lists"):
            periods, idle = memberships(list_writes(lists))
            for period in periods:
                opened, closed = period.opened_by, period.closed_by
                members.append(
                    [
                        period.list_id,
                        person_id,
                        opened.command_id,
                        opened.at,
                        opened.by,
                        closed.at if closed else None,
                        closed.by if closed else "",
                        version,
                        hidden,
                    ]
                )
            # An add that opened nothing may have opened a period before a late write arrived: hide its row.
            members += [[w.list_id, person_id, w.command_id, w.at, w.by, None, "", version, 1] for w in idle]
    return history, members


def rule_commands(person_rows: Iterable[list], rules: StageRules, now: datetime) -> list[UserCommand]:
    """The forward moves the in-memory stage rules make for these persons, as commands. A move's command id
    derives from (person, rule, stage moved from), so re-deciding it after a crash sends the same command
    again; a move the person's writes already hold (decided before: it took effect or its compare-and-set
    failed) is not sent again."""
    if not rules:
        return []
    commands = []
    for row in person_rows:
        if row[_COLUMN["is_deleted"]]:
            continue
        person_id, current = row[_COLUMN["person_id"]], row[_COLUMN["stage"]]
        properties = targeting_properties(orjson.loads(row[_COLUMN["properties"]]), {n: row[i] for n, i in _COLUMN.items()})
        stored = _stored(row, "stages")
        move = rules.move(current, fired_rules(stage_writes(stored)), properties)
        if move is not None and move_command_id(person_id, move.rule, current) not in stored:
            commands.append(move_command(person_id, move, current, now))
    return commands


def lifecycle_stage_row(stage: StageDefinition) -> list:
    rule = stage.rule.model_dump_json() if stage.rule is not None else ""
    updated = stage.updated_at or datetime(1970, 1, 1, tzinfo=UTC)
    return [stage.id, stage.name, stage.order, rule, stage.moved_to or "", epoch_ms(updated), stage.version, int(stage.deleted)]


def list_row(definition: ListDefinition) -> list:
    return [
        definition.id,
        definition.name,
        epoch_ms(definition.created_at),
        epoch_ms(definition.updated_at),
        definition.version,
        int(definition.deleted),
    ]
