"""Static lists: their definitions, and a person's membership periods from its list writes. Pure: no I/O.

Definitions live on the compacted `lists` topic (key: the list id), followed whole by every API process.
Memberships are commands on `user-commands` (`lists_add`, `lists_remove`, with who made them: see
schemas/user_commands.py), so a replay rebuilds them. A person keeps every list write; walked in stamp
order (command time, command id), an add opens a membership period when none is open and a remove closes
the open one: `list_members` holds the periods, so past membership can be queried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class ListDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    version: int = 1
    deleted: bool = False
    created_at: datetime
    updated_at: datetime


def live_lists(records: Iterable[ListDefinition]) -> dict[str, ListDefinition]:
    """The lists in force: each id's newest record, deleted ones dropped."""
    latest: dict[str, ListDefinition] = {}
    for record in records:
        if record.id not in latest or record.version >= latest[record.id].version:
            latest[record.id] = record
    return {list_id: record for list_id, record in latest.items() if not record.deleted}


class ListWrite(NamedTuple):
    at: int  # ms since the epoch
    command_id: str
    list_id: str
    added: bool  # True: add, False: remove
    by: str  # who: "api", "console", "import", a name the client gave, or "snapshot"


class Membership(NamedTuple):
    """One period of a person in a list: opened by an add, closed by a remove (None: still a member)."""

    list_id: str
    opened_by: ListWrite
    closed_by: ListWrite | None


def memberships(writes: Iterable[ListWrite]) -> tuple[list[Membership], list[ListWrite]]:
    """Every membership period, and the adds that opened none (the person was already a member)."""
    by_list: dict[str, list[ListWrite]] = defaultdict(list)
    for write in set(writes):
        by_list[write.list_id].append(write)
    periods: list[Membership] = []
    idle_adds: list[ListWrite] = []
    for list_id, found in sorted(by_list.items()):
        opened: ListWrite | None = None
        for write in sorted(found):
            if write.added and opened is None:
                opened = write
            elif write.added:
                idle_adds.append(write)
            elif opened is not None:
                periods.append(Membership(list_id, opened, write))
                opened = None
        if opened is not None:
            periods.append(Membership(list_id, opened, None))
    return periods, idle_adds


def current_lists(writes: Iterable[ListWrite]) -> list[str]:
    """The lists the person is in now."""
    return sorted({m.list_id for m in memberships(writes)[0] if m.closed_by is None})
