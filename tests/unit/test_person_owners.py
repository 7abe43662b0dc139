"""Partitioned profiles (projections/person_owners.py): owners that fold in any batching, crash before
committing and refold, write late after losing their partition (zombies), and hand merged persons over, end
with the profiles one fold of everything gives."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.directory import Directory
from projections.person_owners import VERSION_BASE, Owned, by_person, fold_owned, records_of, route
from projections.profiles import EMPTY, fold_all, properties_of
from schemas.events import EnrichedEvent
from schemas.identity import PersonIdentity, PersonMerge, person_id_for
from schemas.person_changes import PersonChange
from schemas.user_commands import UserCommand

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
PERSONS = ("a", "b", "c", "d")
PARTITIONS = 3


def event(n: int, person: str, seconds: int, value: int) -> EnrichedEvent:
    # Keys are the person's own, so a merge's "survivor decides" rule and a join agree: the reference is
    # then one fold of every event the survivor ends up with, whatever the order things arrived in.
    return EnrichedEvent(
        message_id=f"m{n}",
        type="track",
        event="E",
        anonymous_id=f"dev-{person}",
        person_id=person,
        timestamp=T0 + timedelta(seconds=seconds),
        received_at=T0,
        source_id="web",
        properties={"$set": {f"{person}_k{value % 3}": value}},
        context={"page": {"referrer": f"https://{person}.example/{seconds}"}},
    )


def partition_of(person: str) -> int:
    return zlib.crc32(person.encode()) % PARTITIONS


class Owners:
    """An in-memory person-changes topic, its owners and the persons table (the highest version wins)."""

    def __init__(self) -> None:
        self.log: list[list[PersonChange]] = [[] for _ in range(PARTITIONS)]
        self.committed = [0] * PARTITIONS
        self.rows: dict[str, tuple[int, Owned]] = {}

    def publish(self, changes: list[PersonChange]) -> None:
        for change in changes:
            self.log[partition_of(change.person_id)].append(change)

    def pending(self) -> list[int]:
        return [p for p in range(PARTITIONS) if self.committed[p] < len(self.log[p])]

    def step(self, partition: int, size: int, crash: bool) -> Callable[[], None]:
        """Fold a batch; returns its writes (rows, then forwards). A crash before the commit leaves the batch
        to be refolded; the caller may also run the writes late, as a zombie that lost the partition would."""
        start = self.committed[partition]
        batch = self.log[partition][start : start + size]
        versions = {}
        for offset, change in enumerate(batch, start):
            versions[change.person_id] = VERSION_BASE + offset
        changes = by_person(batch)
        stored = {p: self.rows[p][1] for p in changes if p in self.rows}
        folded = fold_owned(changes, stored, Directory())

        def write() -> None:
            for person, owned in folded.people.items():
                if person not in self.rows or self.rows[person][0] <= versions[person]:
                    self.rows[person] = (versions[person], owned)
            self.publish(folded.forwards)

        if not crash:
            write()
            self.committed[partition] = start + len(batch)
        return write


@st.composite
def histories(draw):
    count = draw(st.integers(0, 25))
    events = [event(n, draw(st.sampled_from(PERSONS)), draw(st.integers(0, 100)), draw(st.integers(0, 9))) for n in range(count)]
    merges = draw(st.lists(st.sampled_from([("a", "b"), ("c", "d"), ("b", "d")]), unique=True, max_size=3))
    return events, merges


def survivors(merges: list[tuple[str, str]]) -> dict[str, str]:
    """Where each person ends up after the merges."""
    survivor = {p: p for p in PERSONS}
    for absorbed, into in merges:
        survivor[absorbed] = into

    def last(p: str) -> str:
        while survivor[p] != p:
            p = survivor[p]
        return p

    return {p: last(p) for p in PERSONS}


@settings(max_examples=60, deadline=None)
@given(histories(), st.data())
def test_owners_in_any_batching_with_crashes_fold_what_one_fold_of_everything_gives(history, data):
    events, merges = history
    owners = Owners()
    # The projectors' records: each event or merge in some batch, the batches in any order.
    records = [PersonChange(person_id=e.person_id, events=[e]) for e in events]
    records += [
        PersonChange(person_id=a, merges=[PersonMerge(from_person=a, into_person=b, version=v, reason="alias", timestamp=T0)])
        for v, (a, b) in enumerate(merges, 1)
    ]
    owners.publish(data.draw(st.permutations(records)))
    crashes = data.draw(st.integers(0, 3))
    zombies: list[Callable[[], None]] = []  # writes of owners that lost their partition, landing late
    while pending := owners.pending():
        crash = crashes > 0 and data.draw(st.booleans())
        crashes -= crash
        write = owners.step(data.draw(st.sampled_from(pending)), data.draw(st.integers(1, 4)), crash=crash)
        if crash:
            if data.draw(st.booleans()):
                write()  # died after writing, before committing
            else:
                zombies.append(write)
        while zombies and data.draw(st.booleans()):
            zombies.pop(0)()
        if not owners.pending():
            for late in zombies:
                late()
            zombies.clear()

    ends = survivors(merges)
    for person in PERSONS:
        mine = [e for e in events if ends[e.person_id] == person]
        version_owned = owners.rows.get(person)
        if ends[person] != person:
            assert version_owned is not None and version_owned[1].merged_into is not None  # merged away, forwarding
            continue
        state = version_owned[1].state if version_owned else EMPTY
        assert state == fold_all(EMPTY, mine)
        assert properties_of(state) == properties_of(fold_all(EMPTY, mine))


@settings(max_examples=60, deadline=None)
@given(histories())
def test_a_batch_folded_twice_changes_nothing(history):
    events, _ = history
    changes = by_person([PersonChange(person_id=e.person_id, events=[e]) for e in events])
    once = fold_owned(changes, {}, Directory())
    twice = fold_owned(changes, once.people, Directory())
    assert {p: o.state for p, o in twice.people.items()} == {p: o.state for p, o in once.people.items()}


def test_a_merged_away_person_forwards_later_events_and_resends_its_hand_over():
    merge = PersonMerge(from_person="a", into_person="b", version=1, reason="identify", timestamp=T0)
    first = fold_owned({"a": [PersonChange(person_id="a", events=[event(1, "a", 1, 1)], merges=[merge])]}, {}, Directory())
    assert first.people["a"].merged_into == "b"
    assert [f.person_id for f in first.forwards] == ["b"] and first.forwards[0].absorbed[0].person_id == "a"

    later = fold_owned({"a": [PersonChange(person_id="a", events=[event(2, "a", 2, 2)], merges=[merge])]}, first.people, Directory())
    assert "a" not in later.people  # nothing new to write for a
    forwarded, hand_over = later.forwards
    assert forwarded.person_id == "b" and [e.message_id for e in forwarded.events] == ["m2"] and forwarded.recount
    assert hand_over.absorbed[0].state == first.people["a"].state.to_json()


def test_a_stand_in_hands_over_only_what_it_holds():
    empty = fold_owned({"s": [PersonChange(person_id="s", stand_in_for=["real"])]}, {}, Directory())
    assert empty.people == {} and empty.forwards == []  # never stored, nothing to fold: no row
    held = fold_owned({"s": [PersonChange(person_id="s", events=[event(1, "s", 1, 1)], stand_in_for=["real"])]}, {}, Directory())
    assert held.people["s"].merged_into == "real" and held.forwards[0].person_id == "real"
    identity = PersonIdentity(person_id="s", visitor_number=3, identified=False, is_contact=False, version=1)
    real_person = fold_owned(
        {"s": [PersonChange(person_id="s", events=[event(1, "s", 1, 1)], identities=[identity], stand_in_for=["real"])]}, {}, Directory()
    )
    assert real_person.people["s"].merged_into is None and real_person.forwards == []  # a person of its own


def test_routing_sends_each_event_to_its_live_person_and_disabled_ones_to_a_recount_only():
    disable = UserCommand(kind="update", command_id="c1", person_id="p-disabled", at=T0 - timedelta(hours=1), status="disabled")
    directory = Directory().apply_all([disable])
    mapped = event(1, "stamped", 1, 1).model_copy(update={"anonymous_id": "dev-1"})
    stand_in = event(2, person_id_for("dev-2"), 1, 1).model_copy(update={"anonymous_id": "dev-2"})
    disabled = event(3, "p-disabled", 1, 1).model_copy(update={"anonymous_id": "dev-3"})
    changes = SimpleNamespace(
        events=[mapped, stand_in, disabled], commands=[], identities=[], merges=[], distinct_ids={"dev-2"}, session_keys=set()
    )
    routed = route(changes, {"dev-1": "p1", "dev-2": "p2", "dev-3": "p-disabled"}, {}, directory)
    assert [e.message_id for e in routed["p1"].events] == ["m1"]
    assert [e.message_id for e in routed["p2"].events] == ["m2"]  # the mapping is known now: the live person
    assert routed[person_id_for("dev-2")].stand_in_for == ["p2"]  # what an earlier batch stamped goes there too
    assert routed["p-disabled"].events == [] and routed["p-disabled"].recount
    assert routed["p2"].recount


@settings(max_examples=40, deadline=None)
@given(histories(), st.integers(300, 5000))
def test_a_busy_persons_change_splits_into_records_that_fold_to_the_same_profile(history, max_bytes):
    events, _ = history
    mine = [e.model_copy(update={"person_id": "a"}) for e in events]
    merge = PersonMerge(from_person="a", into_person="b", version=1, reason="alias", timestamp=T0)
    change = PersonChange(person_id="a", events=mine, merges=[merge], recount=True)
    values = records_of(change, max_bytes)
    assert all(len(v) <= max_bytes for v in values if len(PersonChange.model_validate_json(v).events) > 1)
    records = [PersonChange.model_validate_json(v) for v in values]
    assert sum(len(r.events) for r in records) == len(mine) and all(r.person_id == "a" for r in records)
    whole, split = fold_owned({"a": [change]}, {}, Directory()), fold_owned({"a": records}, {}, Directory())
    assert whole.people == split.people and whole.forwards == split.forwards
