"""Properties of the identity resolver that must hold for any sequence of commands."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.identity import IdentityResolver, Resolution, is_illegal_id, person_id_for
from schemas.identity import IdentityCommand

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
LEGAL_IDS = ["anon-1", "anon-2", "anon-3", "user-1", "user-2", "user-3"]
ILLEGAL_IDS = ["null", " Undefined", '"guest"', "", "[object Object]"]

examples = settings(max_examples=200, deadline=None)

legal_ids = st.sampled_from(LEGAL_IDS)
any_ids = st.sampled_from(LEGAL_IDS + ILLEGAL_IDS)


def command_shapes(ids: st.SearchStrategy[str]) -> st.SearchStrategy[dict]:
    """Commands without a message id yet: the list they end up in numbers them."""
    return st.one_of(
        st.builds(lambda d, user: {"kind": "seen", "distinct_id": d, "user_id": d if user else None}, ids, st.booleans()),
        st.builds(
            lambda a, u, email: {"kind": "identify", "anonymous_id": a, "user_id": u, "email": email},
            ids,
            ids,
            st.sampled_from([None, "x@example.com"]),
        ),
        st.builds(lambda p, u: {"kind": "alias", "previous_id": p, "user_id": u}, ids, ids),
    )


def numbered(shapes: list[dict]) -> list[IdentityCommand]:
    return [IdentityCommand(message_id=f"m{i}", timestamp=T0, **shape) for i, shape in enumerate(shapes)]


def run(commands: list[IdentityCommand]) -> tuple[IdentityResolver, dict, list[Resolution]]:
    store: dict = {}
    resolver = IdentityResolver(store)
    return resolver, store, [resolver.apply(c) for c in commands]


def aliases(pairs: list[tuple[str, str]]) -> list[IdentityCommand]:
    return numbered([{"kind": "alias", "previous_id": p, "user_id": u} for p, u in pairs])


def grouping(resolver: IdentityResolver, ids: list[str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for distinct_id in ids:
        if (person := resolver.resolve(distinct_id)) is not None:
            groups.setdefault(person, set()).add(distinct_id)
    return {frozenset(group) for group in groups.values()}


def connected_components(pairs: list[tuple[str, str]]) -> set[frozenset[str]]:
    """The oracle: which legal ids the aliases connect, by plain graph search."""
    edges: dict[str, set[str]] = {}
    for previous_id, user_id in pairs:
        if is_illegal_id(previous_id) or is_illegal_id(user_id):
            for lone in (previous_id, user_id):
                if not is_illegal_id(lone):
                    edges.setdefault(lone, set())
            continue
        edges.setdefault(previous_id, set()).add(user_id)
        edges.setdefault(user_id, set()).add(previous_id)
    components, placed = set(), set()
    for start in edges:
        if start in placed:
            continue
        component, frontier = {start}, [start]
        while frontier:
            for neighbour in edges[frontier.pop()] - component:
                component.add(neighbour)
                frontier.append(neighbour)
        placed |= component
        components.add(frozenset(component))
    return components


@examples
@given(shapes=st.lists(command_shapes(any_ids), max_size=25), data=st.data())
def test_a_duplicate_changes_nothing_and_resends_exactly_what_was_last_sent(shapes, data):
    """No state change, no warning, no merge; each mapping and identity it re-sends is the one last sent for that
    distinct id or person (same version), so downstream the copy is the same record."""
    commands = numbered(shapes + [{"kind": "seen", "distinct_id": "anon-1"}])
    resolver, store, resolutions = run(commands)
    before = copy.deepcopy(store)
    last_mapping = {m.distinct_id: m for r in resolutions for m in r.mappings}
    last_identity = {p.person_id: p for r in resolutions for p in r.persons}

    again = resolver.apply(data.draw(st.sampled_from(commands)))

    assert store == before
    assert (again.warnings, again.merges) == ([], [])
    assert all(mapping == last_mapping[mapping.distinct_id] for mapping in again.mappings)
    assert all(identity == last_identity[identity.person_id] for identity in again.persons)


@examples
@given(pairs=st.lists(st.tuples(any_ids, any_ids), max_size=15), data=st.data())
def test_the_grouping_after_aliases_does_not_depend_on_their_order(pairs, data):
    shuffled = data.draw(st.permutations(pairs))

    in_order, _, _ = run(aliases(pairs))
    reordered, _, _ = run(aliases(shuffled))

    expected = connected_components(pairs)
    assert grouping(in_order, LEGAL_IDS) == grouping(reordered, LEGAL_IDS) == expected


@examples
@given(shapes=st.lists(command_shapes(any_ids), max_size=30))
def test_illegal_ids_never_end_up_in_a_person_or_a_merge(shapes):
    resolver, store, results = run(numbered(shapes))

    illegal_persons = {person_id_for(d) for d in ILLEGAL_IDS}
    for result in results:
        assert not any(is_illegal_id(m.distinct_id) or m.person_id in illegal_persons for m in result.mappings)
        assert not any({m.from_person, m.into_person} & illegal_persons for m in result.merges)
        assert not any(p.person_id in illegal_persons for p in result.persons)
    assert all(resolver.resolve(d) is None for d in ILLEGAL_IDS)
    assert not any(key.startswith("distinct_id:") and is_illegal_id(key.removeprefix("distinct_id:")) for key in store)


@examples
@given(shapes=st.lists(command_shapes(any_ids), max_size=30))
def test_folding_the_emitted_records_gives_exactly_the_resolvers_truth(shapes):
    resolver, _, results = run(numbered(shapes))

    mappings, persons, issued = {}, {}, []
    for result in results:
        issued.extend(sorted(r.version for rs in (result.mappings, result.merges, result.persons) for r in rs))
        for mapping in result.mappings:  # highest version wins, as a downstream upsert does
            if mapping.distinct_id not in mappings or mapping.version > mappings[mapping.distinct_id].version:
                mappings[mapping.distinct_id] = mapping
        for person in result.persons:
            if person.person_id not in persons or person.version > persons[person.person_id].version:
                persons[person.person_id] = person

    assert issued == sorted(set(issued)), "one strictly increasing version counter"
    known = [d for d in LEGAL_IDS if resolver.resolve(d) is not None]
    assert {d: m.person_id for d, m in mappings.items()} == {d: resolver.resolve(d) for d in known}
    assert persons == {pid: resolver.person(pid) for pid in persons}
    assert all(persons[resolver.resolve(d)].merged_into is None for d in known), "ids map to live persons"
    visitor_numbers = [p.visitor_number for p in persons.values()]
    assert len(visitor_numbers) == len(set(visitor_numbers)), "visitor numbers are never shared"


class Changelog(dict):
    """A store that also records every write in order, as a faust table's changelog does (None: deleted)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, object]] = []

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.log.append((key, value))

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.log.append((key, None))


def restored(records: list[tuple[str, object]]) -> dict:
    """The store a restarted worker recovers from these changelog records."""
    store: dict = {}
    for key, value in records:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = copy.deepcopy(value)
    return store


@examples
@given(shapes=st.lists(command_shapes(any_ids), min_size=1, max_size=20), data=st.data())
def test_a_worker_killed_part_way_through_a_command_converges_after_the_restart(shapes, data):
    """Killed after any prefix of one command's changelog records, before any of its outputs left (the offset
    was not committed), the restarted worker is given that command again and then the rest: it ends with the
    state of an uninterrupted run, and the records that did leave fold into the same truth."""
    commands = numbered(shapes)
    reference, reference_store, _ = run(commands)

    killed_at = data.draw(st.integers(0, len(commands) - 1), label="killed while applying")
    changelog = Changelog()
    before = IdentityResolver(changelog)
    delivered = [before.apply(c) for c in commands[:killed_at]]
    start = len(changelog.log)
    before.apply(commands[killed_at])
    cut = data.draw(st.integers(0, len(changelog.log) - start), label="its changelog records that made it")

    after = IdentityResolver(store := restored(changelog.log[: start + cut]))
    delivered += [after.apply(c) for c in commands[killed_at:]]

    def facts(s: dict) -> dict:
        return {
            k: v
            for k, v in s.items()
            if k.startswith(("distinct_id:", "person:", "mapping_version:", "counter:version", "counter:visitor"))
        }

    assert facts(store) == facts(reference_store)
    latest: dict[str, tuple[int, str]] = {}
    for result in delivered:
        for mapping in result.mappings:
            latest[mapping.distinct_id] = max(latest.get(mapping.distinct_id, (0, "")), (mapping.version, mapping.person_id))
    assert {d: person for d, (_, person) in latest.items()} == {d: reference.resolve(d) for d in LEGAL_IDS if reference.resolve(d)}
