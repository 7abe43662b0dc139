"""The persons projection: fold a batch's events, merges and identity facts into profile rows.

Read-modify-write per batch, against ClickHouse itself: load the touched persons' reducer state, fold the
new events (projections/profiles.py: order-independent and idempotent, so a replayed batch changes
nothing), apply merges (the absorbed profile folds into the survivor and its row is deleted), and count
events and sessions exactly from ClickHouse (uniqExact over message ids; sessions after FINAL), so a count
can never include a duplicate. One projector owns this table at a time (the embedded engine allows one
process anyway; with a server, run one persons projector — see ARCHITECTURE.md).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from projections.directory import Directory
from projections.person_owners import Folded, Owned, route
from projections.profile_diff import Transition
from projections.profiles import EMPTY, PERSONS, ProfileState, apply_command, fold_all, merge, person_row
from projections.rows import epoch_ms
from schemas.events import EnrichedEvent
from schemas.identity import PersonIdentity, PersonMerge, person_id_for
from schemas.person_changes import PersonChange
from schemas.user_commands import UserCommand


@dataclass
class PersonChanges:
    """What one batch says about persons."""

    events: list[EnrichedEvent] = field(default_factory=list)
    merges: list[PersonMerge] = field(default_factory=list)
    identities: list[PersonIdentity] = field(default_factory=list)
    distinct_ids: set[str] = field(default_factory=set)  # whose mapping changed
    session_keys: set[str] = field(default_factory=set)  # device keys whose sessions began or merged: recount
    commands: list[UserCommand] = field(default_factory=list)  # the management API's creates and updates

    def __bool__(self) -> bool:
        return bool(self.events or self.merges or self.identities or self.distinct_ids or self.session_keys or self.commands)


@dataclass
class _Person:
    state: ProfileState = EMPTY
    identity: PersonIdentity | None = None
    deleted_into: str | None = None
    stored: bool = False  # has a row in ClickHouse already


# A batch touches thousands of persons. Their ids are client-controlled, so they travel as server-side
# parameters (`{ids:Array(String)}`), never inside the SQL; a server client sends them in the request body
# (projections.clickhouse.connect), so no URL limit applies either.


class PersonsProjection:
    def __init__(self, client: Client, database: str):
        self.client = client
        self.db = database

    def _query(self, sql: str, ids: set[str]) -> list[tuple]:
        return self.client.query(sql, parameters={"ids": sorted(ids)}).result_rows

    def rows(self, changes: PersonChanges, overrides: dict[str, str], directory: Directory | None = None) -> list[list]:
        """The new persons rows for everything this batch touched. Deleted persons get none (their rows are
        removed by the projector); events received while their person was disabled do not change it."""
        return self.fold(changes, overrides, directory)[0]

    def fold(
        self, changes: PersonChanges, overrides: dict[str, str], directory: Directory | None = None
    ) -> tuple[list[list], list[Transition]]:
        """The persons rows (as `rows`) and each live person's state before and after the batch (what it changed)."""
        directory = directory or Directory()
        live_of = self._live_persons({e.distinct_id for e in changes.events} | changes.distinct_ids | changes.session_keys)
        touched: dict[str, list[EnrichedEvent]] = defaultdict(list)
        for event in changes.events:
            person = live_of.get(event.distinct_id) or overrides.get(event.person_id or "", event.person_id)
            person = overrides.get(person, person)
            if directory.is_deleted(person):  # received after the delete (else dropped): tracking's fresh person
                person = person_id_for(event.distinct_id)
            if directory.status_at(person, epoch_ms(event.received_at)) == "disabled":
                touched[person]
            else:
                touched[person].append(event)
        commands: dict[str, list[UserCommand]] = defaultdict(list)
        for command in changes.commands:
            if command.kind in ("create", "update"):
                commands[overrides.get(command.person_id, command.person_id)].append(command)
        # An event stamped before its distinct id's mapping existed carries the id that distinct id would
        # found; when the mapping says otherwise, that stand-in profile folds into the real person.
        stand_ins = {person_id_for(d): live_of[d] for d in changes.distinct_ids if d in live_of and person_id_for(d) != live_of[d]}
        stand_ins = {s: p for s, p in stand_ins.items() if not directory.is_deleted(s) and not directory.is_deleted(p)}
        ids = set(touched) | set(live_of.values()) | {i.person_id for i in changes.identities} | set(stand_ins) | set(commands)
        ids |= {m.from_person for m in changes.merges} | {m.into_person for m in changes.merges}
        deleted = {i.person_id for i in changes.identities if i.deleted}
        ids = {i for i in ids if i and i not in deleted and not directory.is_deleted(i)}
        if not ids:
            return [], []
        people = self._load(ids)
        before = {person_id: person.state for person_id, person in people.items()}
        for identity in changes.identities:
            if identity.person_id not in ids:
                continue
            current = people[identity.person_id].identity
            if current is None or current.version < identity.version:
                people[identity.person_id].identity = identity
        for person_id, events in touched.items():
            if person_id in ids:
                people[person_id].state = fold_all(people[person_id].state, events)
        for person_id, applied in commands.items():
            if person_id in ids:
                for command in applied:
                    people[person_id].state = apply_command(people[person_id].state, command)
        for m in sorted(changes.merges, key=lambda m: m.version):
            if m.from_person not in ids or m.into_person not in ids:
                continue
            people[m.into_person].state = merge(people[m.into_person].state, people[m.from_person].state)
            people[m.from_person].deleted_into = m.into_person
        for stand_in, person_id in stand_ins.items():
            if people[stand_in].identity is None and (people[stand_in].stored or people[stand_in].state is not EMPTY):
                people[person_id].state = merge(people[person_id].state, people[stand_in].state)
                people[stand_in].deleted_into = person_id
            elif people[stand_in].identity is None:
                del people[stand_in]  # never stored, nothing to fold: no row for it
        counts = self._counts(ids)
        version = time.time_ns()
        transitions = [
            Transition(person_id, before.get(person_id, EMPTY), person.state)
            for person_id, person in people.items()
            if person.deleted_into is None and not (person.identity is not None and person.identity.merged_into is not None)
        ]
        return [
            person_row(
                person_id,
                person.state,
                person.identity,
                *counts.get(person_id, (0, 0)),
                version,
                is_deleted=person.deleted_into is not None or (person.identity is not None and person.identity.merged_into is not None),
                merged_into=person.deleted_into or (person.identity.merged_into if person.identity else None),
            )
            for person_id, person in people.items()
        ], transitions

    def route(self, changes: PersonChanges, overrides: dict[str, str], directory: Directory) -> dict[str, PersonChange]:
        """What this batch says about each person, for its owner (projections/person_owners.py); run after the
        batch's mappings are written."""
        return route(
            changes,
            self._live_persons({e.distinct_id for e in changes.events} | changes.distinct_ids | changes.session_keys),
            overrides,
            directory,
        )

    def load_owned(self, person_ids: set[str]) -> dict[str, Owned]:
        """The persons as their latest rows have them, merged-away ones included (their owner forwards for them)."""
        found = self._query(
            f"SELECT person_id, argMax(_state, version), argMax(visitor_number, version), argMax(is_identified, version), "
            f"argMax(is_contact, version), argMax(merged_into, version) FROM {self.db}.persons "
            "WHERE person_id IN {ids:Array(String)} GROUP BY person_id",
            person_ids,
        )
        return {
            person_id: Owned(
                ProfileState.from_json(state),
                PersonIdentity(person_id=person_id, visitor_number=number, identified=identified, is_contact=contact, version=0)
                if number
                else None,
                merged_into or None,
                stored=True,
            )
            for person_id, state, number, identified, contact, merged_into in found
        }

    def owned_rows(self, folded: Folded, versions: dict[str, int]) -> list[list]:
        """The owner's rows: each person's state with its exact counts, at its version."""
        counts = self._counts(set(folded.people)) if folded.people else {}
        return [
            person_row(
                person_id,
                owned.state,
                owned.identity,
                *counts.get(person_id, (0, 0)),
                versions[person_id],
                is_deleted=owned.merged_into is not None,
                merged_into=owned.merged_into,
            )
            for person_id, owned in folded.people.items()
        ]

    def _live_persons(self, distinct_ids: set[str]) -> dict[str, str]:
        if not distinct_ids:
            return {}
        return dict(
            self._query(
                f"SELECT distinct_id, argMax(person_id, version) FROM {self.db}.person_distinct_ids "
                "WHERE distinct_id IN {ids:Array(String)} GROUP BY distinct_id",
                distinct_ids,
            )
        )

    def _load(self, person_ids: set[str]) -> dict[str, _Person]:
        found = self._query(
            f"SELECT person_id, _state, visitor_number, is_identified, is_contact FROM {self.db}.persons FINAL "
            "WHERE person_id IN {ids:Array(String)}",
            person_ids,
        )
        people: dict[str, _Person] = defaultdict(_Person)
        for person_id, state, number, identified, contact in found:
            identity = (
                PersonIdentity(person_id=person_id, visitor_number=number, identified=identified, is_contact=contact, version=0)
                if number
                else None
            )
            people[person_id] = _Person(ProfileState.from_json(state), identity, stored=True)
        for person_id in person_ids - people.keys():
            people[person_id] = _Person()  # seen for the first time: starts empty
        return people

    def _counts(self, person_ids: set[str]) -> dict[str, tuple[int, int]]:
        """Exact event and session counts per live person, over all of its distinct ids."""
        mapping = (
            f"SELECT distinct_id, argMax(person_id, version) AS person_id FROM {self.db}.person_distinct_ids "
            f"WHERE distinct_id IN (SELECT distinct_id FROM {self.db}.person_distinct_ids WHERE person_id IN {{ids:Array(String)}}) "
            "GROUP BY distinct_id HAVING person_id IN {ids:Array(String)}"
        )
        events = self._query(
            f"SELECT m.person_id, uniqExactMerge(c.events) FROM {self.db}.event_counts_daily_by_distinct_id AS c "
            f"INNER JOIN ({mapping}) AS m ON c.distinct_id = m.distinct_id GROUP BY m.person_id",
            person_ids,
        )
        sessions = self._query(
            f"SELECT m.person_id, count() FROM {self.db}.sessions AS s FINAL "
            f"INNER JOIN ({mapping}) AS m ON s.device_key = m.distinct_id GROUP BY m.person_id",
            person_ids,
        )
        session_counts = dict(sessions)
        counts = {person: (count, session_counts.get(person, 0)) for person, count in events}
        for person, count in session_counts.items():
            counts.setdefault(person, (0, count))
        return counts


__all__ = ["PERSONS", "PersonChanges", "PersonsProjection"]
