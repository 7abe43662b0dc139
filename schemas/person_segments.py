"""The segments each person is in now, as a compacted topic carries them (`person-segments`, key: the person
id) for readers that cannot ask ClickHouse on their request path: the collector's config targeting reads a
person's segments from here, as it reads the person's properties from person-properties. Pure: no I/O.

The segment evaluator is the only writer. A record follows from the evaluator's state alone (the segment
changes it published on profile-changes, which it reads back at every start), so it is idempotent: the same
state gives the same record. `version` counts the person's published segment transitions (each enter and
each exit adds one), so it only grows and a reader keeps the highest; a person in no segment is a tombstone.
At start the evaluator compares the topic with its state and publishes what differs (`reconcile`), so a
crash between a transition and its record, or a lost topic, heals without a replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from schemas.segments import MemberState


class PersonSegments(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_id: str
    version: int = Field(ge=0)  # the number of segment transitions (enters and exits) published for the person
    segments: list[str] = Field(default_factory=list)  # the segment ids the person is in now, sorted


Record = tuple[str, bytes | None]  # (key, value): None is a tombstone


def transitions_of(standing: MemberState) -> int:
    """Enters and exits one (segment, person) has had: entry n is the n-th enter; an exit closes it."""
    return 2 * standing.entries - (1 if standing.inside else 0)


def segments_of(person_id: str, state: Mapping[tuple[str, str], MemberState], segment_ids: Iterable[str]) -> PersonSegments | None:
    """The person's record by the state (None: in no segment now, a tombstone). `segment_ids`: every segment
    the state knows (deleted ones too: their exits count)."""
    standings = {s: found for s in segment_ids if (found := state.get((s, person_id))) is not None}
    inside = sorted(s for s, standing in standings.items() if standing.inside)
    if not inside:
        return None
    return PersonSegments(person_id=person_id, version=sum(transitions_of(s) for s in standings.values()), segments=inside)


def known_segments(state: Mapping[tuple[str, str], MemberState]) -> set[str]:
    return {segment_id for segment_id, _ in state}


def records_for(
    person_ids: Iterable[str], state: Mapping[tuple[str, str], MemberState], segment_ids: Iterable[str] | None = None
) -> list[Record]:
    """The records of these persons (the ones a batch of transitions touched), in person order. `segment_ids`:
    every segment the state knows, when the caller keeps them (else found by scanning the whole state)."""
    segment_ids = known_segments(state) if segment_ids is None else segment_ids
    return [_record(person_id, segments_of(person_id, state, segment_ids)) for person_id in sorted(set(person_ids))]


def reconcile(state: Mapping[tuple[str, str], MemberState], published: Mapping[str, PersonSegments]) -> list[Record]:
    """What to publish so that the topic (`published`: its live records by key) says what the state says: a
    record for every person whose published one differs, a tombstone for every person the topic still has in
    a segment and the state does not."""
    segment_ids = known_segments(state)
    persons = {person_id for _, person_id in state} | set(published)
    found = []
    for person_id in sorted(persons):
        wanted = segments_of(person_id, state, segment_ids)
        if wanted != published.get(person_id):
            found.append(_record(person_id, wanted))
    return found


def _record(person_id: str, record: PersonSegments | None) -> Record:
    return person_id, None if record is None else record.model_dump_json().encode()
