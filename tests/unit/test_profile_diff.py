"""What the projector publishes on profile-changes (projections/profile_diff.py): the changes a batch makes, with
ids from their causes. Properties: the changes replay the state, a redelivered batch changes nothing, and
stage and list changes keep their ids however the commands were batched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.profile_diff import Transition, changes_of, profile_changes, sources_of
from projections.profiles import EMPTY, ProfileState, apply_command, list_writes, properties_of, stage_writes, status_of, tags_of
from schemas.lists import current_lists
from schemas.stages import DEFAULT_STAGE_IDS, DEFAULT_STAGES, rank_of, walk_stages
from schemas.user_commands import UserCommand

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RANK = rank_of(sorted(DEFAULT_STAGES.values(), key=lambda s: s.order))
KEYS = st.sampled_from(["plan", "email", "score"])
VALUES = st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"]), st.none())


@st.composite
def commands(draw, count: int = 8, in_order: bool = False) -> list[UserCommand]:
    """Update commands; `in_order`: each later than the one before (else times collide and arrive late)."""
    made = []
    for index in range(draw(st.integers(1, count))):
        stage = draw(st.one_of(st.none(), st.sampled_from(DEFAULT_STAGE_IDS[:5])))
        by = draw(st.sampled_from(["api", "import", "rule:lead"]))
        made.append(
            UserCommand(
                kind="update",
                command_id=f"c{index}",
                person_id="p",
                at=AT + timedelta(seconds=index if in_order else draw(st.integers(0, 5))),
                set=draw(st.dictionaries(KEYS, VALUES, max_size=2)),
                unset=draw(st.lists(KEYS, max_size=1)),
                status=draw(st.sampled_from([None, "active", "disabled"])),
                tags_add=draw(st.lists(st.sampled_from(["vip", "beta"]), max_size=2, unique=True)),
                tags_remove=draw(st.lists(st.sampled_from(["vip"]), max_size=1)),
                stage=stage,
                stage_by=by if stage else None,
                stage_reason="because" if stage else "",
                lists_add=draw(st.lists(st.sampled_from(["l1", "l2"]), max_size=1)),
                lists_remove=draw(st.lists(st.sampled_from(["l1"]), max_size=1)),
                lists_by="api",
                by="import" if by == "import" else "api",
            )
        )
    return made


def applied(state: ProfileState, batch: list[UserCommand]) -> ProfileState:
    for command in batch:
        state = apply_command(state, command)
    return state


def step(state: ProfileState, batch: list[UserCommand]):
    after = applied(state, batch)
    return after, profile_changes(Transition("p", state, after), sources_of([], batch), RANK)


@settings(max_examples=150)
@given(commands(in_order=True), st.integers(0, 8))
def test_the_changes_replay_the_state(batch, split):
    """Starting from `before`, applying each change's `after` in order gives the state `after` shows. (Writes that
    arrive late can re-pair list periods a batch published before: consumers order those by `at`.)"""
    before, _ = step(EMPTY, batch[:split])
    after, changes = step(before, batch[split:])
    props, tags, status = dict(properties_of(before)), set(tags_of(before)), status_of(before)
    stage, lists = walk_stages(stage_writes(before.stages))[0], set(current_lists(list_writes(before.lists)))
    for change in changes:
        if change.kind == "property_changed":
            assert change.before != change.after or change.detail["unset"] != (not change.detail["was_set"])
            if change.detail["unset"]:
                props.pop(change.subject)
            else:
                props[change.subject] = change.after
        elif change.kind in ("tag_added", "tag_removed"):
            (tags.add if change.kind == "tag_added" else tags.discard)(change.subject)
        elif change.kind == "status_changed":
            assert change.before == status
            status = change.after
        elif change.kind == "stage_changed":
            stage = change.after
        else:
            (lists.add if change.kind == "list_added" else lists.discard)(change.subject)
    assert props == properties_of(after)
    assert tags == set(tags_of(after))
    assert status == status_of(after)
    assert (stage, lists) == (walk_stages(stage_writes(after.stages))[0], set(current_lists(list_writes(after.lists))))


@given(commands())
def test_a_redelivered_batch_changes_nothing(batch):
    after, first = step(EMPTY, batch)
    again, second = step(after, batch)
    assert second == []
    assert again == after
    assert len({c.change_id for c in first}) == len(first)  # one id per change


@given(commands(), st.integers(0, 8))
def test_stage_and_list_changes_keep_their_ids_however_batched(batch, split):
    """One batch or two: each stage and list transition of the whole is one the steps published, with its id."""
    _, whole = step(EMPTY, batch)
    middle, first = step(EMPTY, batch[:split])
    _, second = step(middle, batch[split:])
    kinds = ("stage_changed", "list_added", "list_removed")
    stepped = {c.change_id: c for c in first + second if c.kind in kinds}
    for change in whole:
        if change.kind in kinds:
            assert stepped.get(change.change_id) == change


@given(commands())
def test_same_states_give_same_ids(batch):
    after = applied(EMPTY, batch)
    transitions = [Transition("p", EMPTY, after)]
    assert changes_of(transitions, sources_of([], batch), RANK) == changes_of(transitions, sources_of([], batch), RANK)


def test_a_manual_backward_move_carries_its_reason_and_direction():
    forward = UserCommand(kind="update", command_id="r", person_id="p", at=AT, stage="customer", stage_by="rule:customer", stage_from="")
    back = UserCommand(
        kind="update",
        command_id="m",
        person_id="p",
        at=AT + timedelta(seconds=1),
        stage="lead",
        stage_by="api",
        stage_reason="refund",
        by="api",
    )
    moved, (first,) = step(EMPTY, [forward])
    assert (first.kind, first.source, first.after, first.detail["direction"]) == ("stage_changed", "rule:customer", "customer", "forward")
    _, (second,) = step(moved, [back])
    assert (second.source, second.before, second.after) == ("api", "customer", "lead")
    assert second.detail == {"reason": "refund", "direction": "backward"}
    assert second.at == back.at


def test_sources_say_what_made_each_write():
    imported = UserCommand(kind="update", command_id="i", person_id="p", at=AT, set={"plan": "pro"}, tags_add=["vip"], by="import")
    _, changes = step(EMPTY, [imported])
    assert {(c.kind, c.source, c.subject) for c in changes} == {("property_changed", "import", "plan"), ("tag_added", "import", "vip")}
    (prop,) = [c for c in changes if c.kind == "property_changed"]
    assert (prop.before, prop.after, prop.at) == (None, "pro", AT)


def test_an_unchanged_value_is_no_change():
    first = UserCommand(kind="update", command_id="a", person_id="p", at=AT, set={"plan": "pro"})
    same = UserCommand(kind="update", command_id="b", person_id="p", at=AT + timedelta(seconds=1), set={"plan": "pro"})
    after, _ = step(EMPTY, [first])
    assert step(after, [same])[1] == []
