"""Properties of the object fold (schemas/objects.py) that must hold for any commands: order independence and
idempotence (duplicates, replays), deletes, links, stages and closed times, and the profile changes a command
makes for its linked users; then the object types' own rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from projections.objects import link_rows, object_row
from schemas.objects import (
    DEFAULT_TYPES,
    EMPTY_OBJECT,
    Link,
    ObjectCommand,
    ObjectState,
    ObjectTypeDefinition,
    active_links,
    effective_types,
    fold_command,
    join_states,
    linked_persons,
    object_exists,
    object_owner,
    object_properties,
    object_stage,
    profile_changes_of,
    with_person_moved,
    without_links,
)
from schemas.profile_changes import change_id_of

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
examples = settings(max_examples=200, deadline=None)
KEYS = ["amount", "name", "priority"]
values = st.one_of(st.none(), st.sampled_from([100, "Big deal", "high"]))
LINKS = [Link(kind="user", id="ann"), Link(kind="user", id="bob"), Link(kind="company", id="acme")]

command_shapes = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["create", "update", "move", "delete", "link", "unlink"]),
        "at": st.integers(0, 20),
        "set": st.dictionaries(st.sampled_from(KEYS), values, max_size=2),
        "unset": st.lists(st.sampled_from(KEYS), max_size=1),
        "stage": st.sampled_from(["open", "won", "lost"]),
        "owner": st.sampled_from([None, "", "alice", "bruno"]),
        "links": st.lists(st.sampled_from(LINKS), max_size=3, unique=True),
    }
)


def commands(drawn: list[dict]) -> list[ObjectCommand]:
    made = []
    for i, s in enumerate(drawn):
        kind = s["kind"]
        made.append(
            ObjectCommand(
                kind=kind,
                command_id=f"c{i:03d}",
                object_type="deal",
                object_id="d1",
                at=T0 + timedelta(milliseconds=s["at"]),
                set=s["set"] if kind in ("create", "update") else {},
                unset=s["unset"] if kind == "update" else [],
                stage=s["stage"] if kind in ("create", "move") else None,
                closed=s["stage"] in ("won", "lost") and kind in ("create", "move"),
                owner=s["owner"] if kind in ("create", "update") else None,
                links=s["links"] if kind in ("create", "link", "unlink") else [],
            )
        )
    return made


def fold(cmds: list[ObjectCommand], start: ObjectState = EMPTY_OBJECT) -> ObjectState:
    return reduce(fold_command, cmds, start)


def shown(state: ObjectState) -> tuple:
    return (object_exists(state), object_properties(state), object_stage(state), object_owner(state), active_links(state))


@examples
@given(st.lists(command_shapes, max_size=8), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_object(drawn, random):
    cmds = commands(drawn)
    shuffled = list(cmds)
    random.shuffle(shuffled)
    assert fold(shuffled) == fold(cmds)
    assert shown(fold(shuffled)) == shown(fold(cmds))


@examples
@given(st.lists(command_shapes, max_size=8), st.integers(0, 8))
def test_redelivery_and_replay_change_nothing(drawn, cut):
    cmds = commands(drawn)
    once = fold(cmds)
    assert fold(cmds, once) == once  # the whole log again (a replay over the live state)
    assert fold(cmds[:cut] + cmds) == once  # a crash re-delivers a prefix
    assert ObjectState.from_json(once.to_json()) == once


@examples
@given(st.lists(command_shapes, max_size=6), st.lists(command_shapes, max_size=6))
def test_split_batches_join_to_the_whole(first, second):
    cmds = commands(first + second)
    left, right = cmds[: len(first)], cmds[len(first) :]
    assert join_states(fold(left), fold(right)) == fold(cmds)


@examples
@given(st.lists(command_shapes, max_size=8))
def test_a_delete_hides_everything_written_until_it(drawn):
    cmds = commands(drawn)
    last = max((c.at for c in cmds), default=T0)
    deleted = fold([*cmds, ObjectCommand(kind="delete", command_id="zzz", object_type="deal", object_id="d1", at=last)])
    assert not object_exists(deleted)
    assert object_properties(deleted) == {} and object_stage(deleted) == ("", None) and active_links(deleted) == {}
    row = object_row(("deal", "d1"), deleted, 1)
    assert row[-1] == 1  # the row deletes the object
    assert all(r[-1] == 1 for r in link_rows(("deal", "d1"), deleted, 1))


@examples
@given(st.lists(command_shapes, min_size=1, max_size=8))
def test_each_change_goes_to_every_linked_person_with_a_stable_id(drawn):
    cmds = commands(drawn)
    state = EMPTY_OBJECT
    for command in cmds:
        after = fold_command(state, command)
        changes = profile_changes_of(command, state, after)
        persons = {c.person_id for c in changes}
        if object_exists(state) or object_exists(after):
            assert linked_persons(state) | linked_persons(after) <= persons
        assert all(c.change_id == change_id_of(command.command_id, c.person_id) for c in changes)
        assert all(c.subject == "deal:d1" for c in changes)
        again = profile_changes_of(command, state, after)
        assert again == changes
        state = after


def test_a_deal_moved_through_its_stages_closes_and_reopens():
    ann, bob = Link(kind="user", id="ann"), Link(kind="user", id="bob")
    created = ObjectCommand(
        kind="create", command_id="a", object_type="deal", object_id="d", at=T0, stage="open", links=[ann, bob], owner="alice"
    )
    won = ObjectCommand(
        kind="move", command_id="b", object_type="deal", object_id="d", at=T0 + timedelta(seconds=1), stage="won", closed=True
    )
    state = fold([created])
    changes = profile_changes_of(created, EMPTY_OBJECT, state)
    assert [(c.person_id, c.kind) for c in changes] == [("ann", "object_created"), ("bob", "object_created")]
    after = fold_command(state, won)
    moved = profile_changes_of(won, state, after)
    assert [(c.person_id, c.kind, c.before, c.after) for c in moved] == [
        ("ann", "object_stage_changed", "open", "won"),
        ("bob", "object_stage_changed", "open", "won"),
    ]
    assert object_stage(after) == ("won", int((T0 + timedelta(seconds=1)).timestamp() * 1000))
    reopened = fold_command(
        after, ObjectCommand(kind="move", command_id="c", object_type="deal", object_id="d", at=T0 + timedelta(seconds=2), stage="open")
    )
    assert object_stage(reopened) == ("open", None)
    unlink = ObjectCommand(kind="unlink", command_id="d", object_type="deal", object_id="d", at=T0 + timedelta(seconds=3), links=[bob])
    unlinked = fold_command(reopened, unlink)
    assert linked_persons(unlinked) == {"ann"}
    assert {c.person_id for c in profile_changes_of(unlink, reopened, unlinked)} == {"ann", "bob"}  # bob sees it go
    assert linked_persons(without_links(state, ["user:bob"])) == {"ann"}


def test_object_types_check_their_stages_and_fall_back_to_the_defaults():
    assert DEFAULT_TYPES["ticket"].stages == ["new", "open", "pending", "solved"]
    assert DEFAULT_TYPES["deal"].initial_stage == "open" and DEFAULT_TYPES["deal"].is_closed("lost")
    with pytest.raises(ValidationError, match="closed stage 'gone'"):
        ObjectTypeDefinition(name="project", stages=["todo", "done"], closed_stages=["gone"])
    with pytest.raises(ValidationError, match="distinct"):
        ObjectTypeDefinition(name="project", stages=["todo", "todo"])
    with pytest.raises(ValidationError, match="stage effect"):
        ObjectTypeDefinition(name="project", stages=["todo"], stage_effects={"done": "customer"})
    project = ObjectTypeDefinition(name="project", stages=["todo", "done"], version=1)
    gone = project.model_copy(update={"version": 2, "deleted": True})
    assert "project" in effective_types([project]) and "project" not in effective_types([project, gone])
    redefined = DEFAULT_TYPES["deal"].model_copy(update={"stages": ["open", "won", "lost", "stalled"], "version": 1})
    assert effective_types([redefined])["deal"].stages[-1] == "stalled"
    assert effective_types([redefined.model_copy(update={"version": 2, "deleted": True})])["deal"] == DEFAULT_TYPES["deal"]


@examples
@given(st.lists(command_shapes, max_size=8))
def test_a_merge_hands_the_links_to_the_survivor_whatever_came_first(drawn):
    cmds = commands(drawn)
    merged = with_person_moved(fold(cmds), "bob", "ann")
    persons = linked_persons(fold(cmds))
    assert "bob" not in linked_persons(merged)
    state = fold(cmds)
    latest = max((w for w in (state.links.get("user:ann"), state.links.get("user:bob")) if w), key=lambda w: w.stamp, default=None)
    expected = latest is not None and "user:ann" in active_links(replace(state, links={"user:ann": latest}))
    assert ("ann" in linked_persons(merged)) == expected
    assert persons - {"ann", "bob"} == linked_persons(merged) - {"ann"}
    # Commands that never named the survivor: the same links as if they had been written for the survivor.
    if "ann" not in {link.id for c in cmds for link in c.links}:
        renamed = [c.model_copy(update={"links": [Link(kind=k.kind, id="ann" if k.id == "bob" else k.id) for k in c.links]}) for c in cmds]
        assert active_links(fold(renamed)) == active_links(merged)


def test_memberships_changes_are_the_transitions_only():
    from projections.companies import member_row, membership_changes, membership_of_command
    from schemas.companies import CompanyCommand

    add = CompanyCommand(kind="member_add", command_id="m1", company_id="acme", person_id="ann", at=T0, role="buyer")
    end = CompanyCommand(kind="member_end", command_id="m2", company_id="acme", person_id="ann", at=T0 + timedelta(seconds=1))
    joined_row = member_row("acme", "ann", membership_of_command(add), None, False, 1)
    [joined] = membership_changes(set(), [joined_row], 0)
    assert (joined.kind, joined.person_id, joined.subject, joined.detail["role"]) == ("company_joined", "ann", "acme", "buyer")
    assert membership_changes({("acme", "ann")}, [joined_row], 0) == []  # already a member: nothing new
    assert membership_changes(set(), [joined_row], 0)[0].change_id == joined.change_id  # the same transition, the same id
    from projections.companies import join_members

    ended_row = member_row("acme", "ann", join_members(membership_of_command(add), membership_of_command(end)), None, False, 2)
    [left] = membership_changes({("acme", "ann")}, [ended_row], 0)
    assert left.kind == "company_left" and left.change_id != joined.change_id
    derived_row = member_row("acme", "bob", membership_of_command(add).__class__(), None, True, 3, derived_since_ms=5)
    [by_domain] = membership_changes(set(), [derived_row], 0)
    assert by_domain.detail["derived"] and by_domain.source == "domain"


def test_a_command_the_state_could_not_hold_is_unreadable_not_a_crash():
    """An integer beyond 64 bits cannot be written by orjson: the model refuses it, so the projector keeps such a
    record as a bad row (a ValidationError is its poison-message path) instead of failing on every batch."""
    raw = b'{"kind":"create","command_id":"x","object_type":"deal","object_id":"d","at":"2026-01-01T00:00:00Z","set":{"n":1180591620717411303424}}'
    with pytest.raises(ValidationError, match="64 bits"):
        ObjectCommand.model_validate_json(raw)
