"""The objects projection: fold a batch's object commands (schemas/objects.py) into `objects` and
`object_links`, and say which profile changes they made (the projector publishes them on profile-changes).

Read-modify-write per batch, as companies do (projections/company_projection.py): load the touched objects'
fold state (the latest row of each, deleted ones included), join the batch's commands in order, rewrite the
object's row and every link row it has. A link to a user deleted or erased since is never written (live or
replayed: the directory knows every delete before the first batch); a removal forgets the user's links in the
states of the objects they were linked to, so no later write brings them back. A person merged into another
hands their links to the survivor.

    object commands ─► states (fold) ─► objects, object_links
                                    └─► profile changes (one per linked person)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import orjson
from clickhouse_connect.driver.client import Client

from projections.directory import Directory
from projections.rows import TableSpec
from schemas.identity import PersonMerge
from schemas.objects import (
    EMPTY_OBJECT,
    ObjectCommand,
    ObjectState,
    active_links,
    epoch_ms,
    fold_command,
    object_due,
    object_exists,
    object_owner,
    object_properties,
    object_stage,
    profile_changes_of,
    with_person_moved,
    without_links,
)
from schemas.profile_changes import ProfileChange
from schemas.user_commands import UserCommand

Insert = Callable[[TableSpec, list[list]], None]
Key = tuple[str, str]  # (object type, object id)

OBJECTS = TableSpec(
    "objects",
    (
        ("object_type", "LowCardinality(String)"),
        ("object_id", "String"),
        ("stage", "LowCardinality(String)"),
        ("owner", "String"),
        ("properties", "String"),
        ("due_at", "Nullable(DateTime64(3, 'UTC'))"),
        ("closed_at", "Nullable(DateTime64(3, 'UTC'))"),
        ("created_at", "DateTime64(3, 'UTC')"),
        ("updated_at", "DateTime64(3, 'UTC')"),
        ("_state", "String"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

OBJECT_LINKS = TableSpec(
    "object_links",
    (
        ("object_type", "LowCardinality(String)"),
        ("object_id", "String"),
        ("link_kind", "LowCardinality(String)"),
        ("link_id", "String"),
        ("linked_at", "DateTime64(3, 'UTC')"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

OBJECT_COMMANDS = TableSpec(
    "object_commands",
    (
        ("command_id", "String"),
        ("kind", "LowCardinality(String)"),
        ("object_type", "LowCardinality(String)"),
        ("object_id", "String"),
        ("at", "DateTime64(3, 'UTC')"),
        ("applied_at", "DateTime64(3, 'UTC')"),
    ),
)


def object_row(key: Key, state: ObjectState, version: int) -> list:
    """One row of {db}.objects, in OBJECTS' column order; a deleted object's row deletes it."""
    stage, closed_at = object_stage(state)
    return [
        key[0],
        key[1],
        stage,
        object_owner(state),
        orjson.dumps(object_properties(state), option=orjson.OPT_SORT_KEYS, default=str).decode(),
        object_due(state),
        closed_at,
        state.first.at if state.first else 0,
        state.latest.at if state.latest else 0,
        state.to_json(),
        version,
        int(not object_exists(state)),
    ]


def link_rows(key: Key, state: ObjectState, version: int) -> list[list]:
    """Every link the state knows: in force, or a deleting row (unlinked, or the object deleted)."""
    active = active_links(state)
    rows = []
    for link, write in sorted(state.links.items()):
        kind, _, link_id = link.partition(":")
        rows.append([key[0], key[1], kind, link_id, active.get(link, write.at), version, int(link not in active)])
    return rows


def object_command_row(command: ObjectCommand, applied_at_ms: int) -> list:
    return [command.command_id, command.kind, command.object_type, command.object_id, epoch_ms(command.at), applied_at_ms]


class ObjectsProjection:
    def __init__(self, client: Client, database: str):
        self.client = client
        self.db = database

    def _rows(self, sql: str, parameters: dict) -> list[tuple]:
        return self.client.query(sql, parameters=parameters).result_rows

    def project(
        self,
        commands: list[ObjectCommand],
        merges: Iterable[PersonMerge],
        removals: Iterable[UserCommand],
        overrides: dict[str, str],
        directory: Directory,
        insert: Insert,
    ) -> list[ProfileChange]:
        """Write the batch's objects and links; the profile changes they made, in command order."""
        removed = [command.person_id for command in removals]
        into = {merge.from_person: merge.into_person for merge in merges}
        forgotten, moved = self._objects_linked_to(removed), self._objects_linked_to(sorted(into))
        if not commands and not forgotten and not moved:
            return []
        states = self._load({(c.object_type, c.object_id) for c in commands} | set(forgotten) | set(moved))
        for key, persons in moved.items():
            for person in persons:
                states[key] = with_person_moved(states[key], person, overrides.get(into[person], into[person]))
        changes: list[ProfileChange] = []
        for command in commands:
            command = _live_links(command, overrides, directory)
            key = (command.object_type, command.object_id)
            before = states[key]
            states[key] = fold_command(before, command)
            changes += profile_changes_of(command, before, states[key])
        for key, persons in forgotten.items():
            states[key] = without_links(states[key], [f"user:{p}" for p in persons])
        for key, state in states.items():  # removed by another projector meanwhile (several in one group)
            if gone := [link for link in state.links if link.startswith("user:") and directory.is_deleted(link.removeprefix("user:"))]:
                states[key] = without_links(state, gone)
        version = time.time_ns()
        insert(OBJECTS, [object_row(key, state, version) for key, state in sorted(states.items()) if state is not EMPTY_OBJECT])
        insert(OBJECT_LINKS, [row for key, state in sorted(states.items()) for row in link_rows(key, state, version)])
        for person in [*removed, *into]:
            self.client.command(
                f"DELETE FROM {self.db}.object_links WHERE link_kind = 'user' AND link_id = {{p:String}}", parameters={"p": person}
            )
        return [change for change in changes if not directory.is_deleted(change.person_id)]

    def _objects_linked_to(self, person_ids: list[str]) -> dict[Key, set[str]]:
        if not person_ids:
            return {}
        found: dict[Key, set[str]] = {}
        for object_type, object_id, person in self._rows(
            f"SELECT DISTINCT object_type, object_id, link_id FROM {self.db}.object_links "
            "WHERE link_kind = 'user' AND link_id IN {p:Array(String)}",
            {"p": sorted(person_ids)},
        ):
            found.setdefault((object_type, object_id), set()).add(person)
        return found

    def _load(self, keys: set[Key]) -> dict[Key, ObjectState]:
        """The latest state of each object, deleted ones included (their delete must keep holding)."""
        states: dict[Key, ObjectState] = dict.fromkeys(keys, EMPTY_OBJECT)
        if keys:
            for object_type, object_id, state in self._rows(
                f"SELECT object_type, object_id, argMax(_state, version) FROM {self.db}.objects "
                "WHERE object_id IN {ids:Array(String)} GROUP BY object_type, object_id",
                {"ids": sorted({object_id for _, object_id in keys})},
            ):
                if (object_type, object_id) in states:
                    states[(object_type, object_id)] = ObjectState.from_json(state)
        return states


def _live_links(command: ObjectCommand, overrides: dict[str, str], directory: Directory) -> ObjectCommand:
    """Links to merged-away persons go to the survivor; links to users deleted since are dropped."""
    if not command.links:
        return command
    links = []
    for link in command.links:
        if link.kind == "user":
            person = overrides.get(link.id, link.id)
            if directory.is_deleted(person):
                continue
            link = link.model_copy(update={"id": person})
        links.append(link)
    return command.model_copy(update={"links": links})
