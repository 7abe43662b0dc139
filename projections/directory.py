"""What the management API decided about users, as every projection step must know it first. Pure: no I/O.

The projector reads the whole `user-commands` topic into a Directory before it projects anything (at
start, and a replay's projector too), then keeps applying commands as they come. So a replay, which reads
the topics in another interleaving than the live run did, still knows every delete, erasure and status
change before the events they concern, and makes the same decisions:

- an event received (collector clock) while its person was disabled is stored, flagged `user_disabled`,
  and does not change the profile;
- a delete at time T drops every event, session and mapping of the person's identifiers received until T,
  and the person for good (its id never comes back: the identity sequencer founds a fresh person for
  later tracking with the same ids);
- an erasure drops every event and session of the identifiers, whenever received, and their mappings.

Identifiers are compared by their SHA-256 digest (the commands carry no identifiers).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from projections.rows import epoch_ms
from schemas.user_commands import UserCommand, id_digest

FOREVER = 2**62


@dataclass
class Directory:
    # person id → sorted [(at ms, command id, status)]
    statuses: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    # id digest → received-at bound (ms) up to which its rows are dropped (FOREVER once erased)
    dropped_until: dict[str, int] = field(default_factory=dict)
    # person id → when it was deleted (ms); deleted persons never have a live profile again
    deleted_persons: dict[str, int] = field(default_factory=dict)

    def apply(self, command: UserCommand) -> None:
        """Learn one command. Idempotent, and the result does not depend on the order of commands."""
        at = epoch_ms(command.at)
        if command.status is not None:
            marks = self.statuses.setdefault(command.person_id, [])
            entry = (at, command.command_id, command.status)
            index = bisect.bisect_left(marks, entry)
            if index == len(marks) or marks[index] != entry:
                marks.insert(index, entry)
        if command.kind in ("delete", "erase"):
            until = FOREVER if command.kind == "erase" else at
            for digest in command.id_digests:
                self.dropped_until[digest] = max(self.dropped_until.get(digest, until), until)
            self.deleted_persons[command.person_id] = max(self.deleted_persons.get(command.person_id, at), at)

    def apply_all(self, commands: Iterable[UserCommand]) -> Directory:
        for command in commands:
            self.apply(command)
        return self

    def status_at(self, person_id: str | None, at_ms: int) -> str:
        """The person's status at a time: the latest status command at or before it ("active" without one)."""
        marks = self.statuses.get(person_id or "")
        if not marks:
            return "active"
        index = bisect.bisect_right(marks, (at_ms, "\U0010ffff", "")) - 1
        return marks[index][2] if index >= 0 else "active"

    def is_deleted(self, person_id: str | None) -> bool:
        return bool(person_id) and person_id in self.deleted_persons

    def drops(self, identifiers: Iterable[str | None], received_ms: int, person_id: str | None = None) -> bool:
        """Whether a row of these identifiers (or stamped with this person), received then, is deleted or erased."""
        if not self.dropped_until and not self.deleted_persons:
            return False
        if person_id and received_ms <= self.deleted_persons.get(person_id, -1):
            return True
        return any(identifier and received_ms <= self.dropped_until.get(id_digest(identifier), -1) for identifier in set(identifiers))

    def erased(self, identifier: str) -> bool:
        return self.dropped_until.get(id_digest(identifier)) == FOREVER
