"""Profiles partitioned by person id, Kafka Streams style: who folds what. Pure: no I/O.

Any number of projectors route what their batch says about persons (`route`) to the `person-changes`
topic, keyed by person id. The owner of a partition of that topic is the one writer of its persons
(`fold_owned`): it folds events, commands and identity facts into the person's state, and carries out a
merge X → Y by marking X merged (its row deleted, `merged_into` Y, the state kept so the hand-over can be
re-sent) and handing X's whole state to Y's owner. What arrives later for X goes on to Y. Every step is a
join or idempotent, so a record delivered twice, or re-sent after a crash, changes nothing.

The decisions are the single projector's (projections/persons.py): the same routing of events to persons,
the same stand-in rule, the same deletes and disabled users.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from projections.directory import Directory
from projections.profiles import EMPTY, ProfileState, apply_command, fold_all, merge
from projections.rows import epoch_ms
from schemas.identity import PersonIdentity, person_id_for
from schemas.person_changes import Absorbed, PersonChange

# A person's row version is VERSION_BASE + the offset of its latest record on its person-changes partition:
# it never goes backwards for a person (a zombie owner's late write of older offsets loses), and it is above
# every time_ns version a single projector wrote (until the year 2116), so switching to owners needs no replay.
VERSION_BASE = 2**62


def route(changes, live_of: dict[str, str], overrides: dict[str, str], directory: Directory) -> dict[str, PersonChange]:
    """One record per person a projector batch touched (`changes` is a projections.persons.PersonChanges;
    `live_of`: distinct id → its person now, from the mappings just written)."""
    parts: dict[str, dict] = defaultdict(lambda: {"events": [], "commands": [], "identities": [], "merges": [], "stand_in_for": []})
    recount: set[str] = set(live_of.values())
    for event in changes.events:
        person = live_of.get(event.distinct_id) or overrides.get(event.person_id or "", event.person_id)
        person = overrides.get(person, person)
        if directory.is_deleted(person):  # received after the delete (else dropped): tracking's fresh person
            person = person_id_for(event.distinct_id)
        if directory.status_at(person, epoch_ms(event.received_at)) == "disabled":
            recount.add(person)  # counted, not folded
        else:
            parts[person]["events"].append(event)
    for command in changes.commands:
        if command.kind in ("create", "update"):
            parts[overrides.get(command.person_id, command.person_id)]["commands"].append(command)
    for identity in changes.identities:
        parts[identity.person_id]["identities"].append(identity)
    for m in changes.merges:
        parts[m.from_person]["merges"].append(m)
    # An event stamped before its distinct id's mapping existed carries the id that distinct id would found;
    # when the mapping says otherwise, that stand-in's owner hands its profile to the real person.
    for distinct_id in changes.distinct_ids:
        stand_in, person = person_id_for(distinct_id), live_of.get(distinct_id)
        if person and stand_in != person and not directory.is_deleted(stand_in) and not directory.is_deleted(person):
            parts[stand_in]["stand_in_for"].append(person)
    routed = {person: PersonChange(person_id=person, **part) for person, part in parts.items() if person}
    for person in recount:
        if person:
            routed[person] = routed.get(person, PersonChange(person_id=person)).model_copy(update={"recount": True})
    return routed


def records_of(change: PersonChange, max_bytes: int) -> list[bytes]:
    """The change as record values under max_bytes each (a busy person's batch can exceed Kafka's message size):
    its events, then its commands, split over several records for the same person, the rest in the last one,
    so the owner folds them in the order one record would have. One event or command too big stays whole."""
    value = change.model_dump_json().encode()
    if len(value) <= max_bytes:
        return [value]
    for part in ("events", "commands"):
        items = getattr(change, part)
        if len(items) > 1:
            half = len(items) // 2
            head = PersonChange(person_id=change.person_id, **{part: items[:half]})
            rest = change.model_copy(update={part: items[half:]})
            return records_of(head, max_bytes) + records_of(rest, max_bytes)
    if change.events and change.commands:
        head = PersonChange(person_id=change.person_id, events=change.events)
        return records_of(head, max_bytes) + records_of(change.model_copy(update={"events": []}), max_bytes)
    return [value]


@dataclass
class Owned:
    """One person as its owner holds it: what ClickHouse has, plus this batch."""

    state: ProfileState = EMPTY
    identity: PersonIdentity | None = None
    merged_into: str | None = None  # merged away (its row deleted): what arrives for it goes there
    stored: bool = False  # has a row already


@dataclass
class Folded:
    people: dict[str, Owned] = field(default_factory=dict)  # the rows to write
    forwards: list[PersonChange] = field(default_factory=list)  # to other persons' owners


def by_person(records: list[PersonChange]) -> dict[str, list[PersonChange]]:
    """A batch's records per person, in their partition's order (a hand-over and what was forwarded after it
    must fold in that order: a merge lets the survivor's properties win)."""
    grouped: dict[str, list[PersonChange]] = defaultdict(list)
    for record in records:
        grouped[record.person_id].append(record)
    return dict(grouped)


def _hand_over(person_id: str, owned: Owned, into: str) -> PersonChange:
    return PersonChange(person_id=into, absorbed=[Absorbed(person_id=person_id, state=owned.state.to_json())])


def _forward(change: PersonChange, into: str) -> PersonChange | None:
    """What arrives for a person merged away belongs to the survivor (identity facts stay with the person)."""
    if not (change.events or change.commands or change.absorbed or change.recount):
        return None
    return PersonChange(person_id=into, events=change.events, commands=change.commands, absorbed=change.absorbed, recount=True)


def fold_owned(changes: dict[str, list[PersonChange]], stored: dict[str, Owned], directory: Directory) -> Folded:
    """The owner's step for one batch of its partitions: every touched person's new state, and what goes on
    to other owners. `stored`: the touched persons as ClickHouse has them (absent: never written)."""
    folded = Folded()
    for person_id, records in changes.items():
        identities = [i for record in records for i in record.identities]
        if directory.is_deleted(person_id) or any(i.deleted for i in identities):
            continue  # deleted: no profile ever again
        owned = stored.get(person_id) or Owned()
        owned = Owned(owned.state, owned.identity, owned.merged_into, owned.stored)
        for identity in identities:
            if owned.identity is None or owned.identity.version < identity.version:
                owned.identity = identity
        if owned.merged_into is None and owned.identity is not None and owned.identity.merged_into:
            owned.merged_into = owned.identity.merged_into
        merges = sorted((m for record in records for m in record.merges), key=lambda m: m.version)
        stand_in_for = sorted({p for record in records for p in record.stand_in_for})
        if owned.merged_into is not None:
            # Merged away before: forward, and re-send the hand-over for a merge seen again (a crash may
            # have come between writing this row and sending it; the survivor's merge is idempotent).
            folded.forwards += [f for record in records if (f := _forward(record, owned.merged_into)) is not None]
            if merges or stand_in_for:
                folded.forwards.append(_hand_over(person_id, owned, owned.merged_into))
            if identities:
                folded.people[person_id] = owned
            continue
        for record in records:  # in order: a hand-over, then what was forwarded after it
            owned.state = fold_all(owned.state, record.events)
            for command in record.commands:
                owned.state = apply_command(owned.state, command)
            for absorbed in record.absorbed:
                owned.state = merge(owned.state, ProfileState.from_json(absorbed.state))
        for m in merges:
            if not directory.is_deleted(m.into_person):
                owned.merged_into = m.into_person
        if owned.merged_into is None and stand_in_for and owned.identity is None:
            if not owned.stored and owned.state is EMPTY:
                continue  # never stored, nothing to fold: no row for it
            owned.merged_into = stand_in_for[-1]
        if owned.merged_into is not None:
            folded.forwards.append(_hand_over(person_id, owned, owned.merged_into))
        folded.people[person_id] = owned
    return folded
