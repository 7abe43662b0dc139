"""Management API commands in the projection, pure: the Directory (deletes, erasures, status over time) and
commands folded into profiles, in any order with tracking's events, each once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.directory import Directory
from projections.profiles import EMPTY, apply_command, fold_all, properties_of, status_of, tags_of
from projections.rows import epoch_ms
from schemas.events import EnrichedEvent
from schemas.user_commands import UserCommand, id_digest

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def update(command_id: str, seconds: float, **fields) -> UserCommand:
    return UserCommand(kind="update", command_id=command_id, person_id="p1", at=at(seconds), **fields)


def event(message_id: str, seconds: float, **set_) -> EnrichedEvent:
    return EnrichedEvent(
        message_id=message_id,
        type="track",
        event="E",
        user_id="u1",
        timestamp=at(seconds),
        received_at=at(seconds),
        source_id="s",
        properties={"$set": set_} if set_ else {},
        person_id="p1",
    )


# -- the directory -------------------------------------------------------------------------------------------


def test_status_over_time_and_what_a_delete_and_an_erasure_drop():
    directory = Directory().apply_all(
        [
            update("c1", 10, status="disabled"),
            update("c2", 20, status="active"),
            UserCommand(kind="delete", command_id="c3", person_id="p2", at=at(30), id_digests=[id_digest("gone")]),
            UserCommand(kind="erase", command_id="c4", person_id="p3", at=at(40), id_digests=[id_digest("erased")]),
        ]
    )
    assert [directory.status_at("p1", epoch_ms(at(s))) for s in (5, 10, 15, 20, 25)] == [
        "active",
        "disabled",
        "disabled",
        "active",
        "active",
    ]
    assert directory.drops(["gone"], epoch_ms(at(30))) and not directory.drops(["gone"], epoch_ms(at(31)))
    assert directory.drops(["x"], epoch_ms(at(29)), person_id="p2") and not directory.drops(["x"], epoch_ms(at(31)), person_id="p2")
    assert directory.drops([None, "erased"], epoch_ms(at(10**6))) and directory.erased("erased") and not directory.erased("gone")
    assert directory.is_deleted("p2") and directory.is_deleted("p3") and not directory.is_deleted("p1")


commands = st.lists(
    st.builds(
        lambda i, seconds, status, kind: UserCommand(
            kind=kind,
            command_id=f"c{i}",
            person_id=f"p{i % 3}",
            at=at(seconds),
            status=status if kind == "update" else None,
            id_digests=[id_digest(f"id{i % 4}")] if kind != "update" else [],
        ),
        st.integers(0, 20),
        st.integers(0, 100),
        st.sampled_from(["active", "disabled"]),
        st.sampled_from(["update", "update", "delete", "erase"]),
    ),
    max_size=15,
)


@settings(max_examples=100, deadline=None)
@given(commands, st.randoms(use_true_random=False))
def test_the_directory_does_not_depend_on_the_order_or_repetition_of_commands(batch, rng: random.Random):
    reordered = batch + batch[: len(batch) // 2]
    rng.shuffle(reordered)
    one, other = Directory().apply_all(batch), Directory().apply_all(reordered)
    assert (one.statuses, one.dropped_until, one.deleted_persons) == (other.statuses, other.dropped_until, other.deleted_persons)


# -- commands in profiles ---------------------------------------------------------------------------------------


def test_a_command_competes_with_tracking_set_by_time_per_key():
    state = fold_all(EMPTY, [event("e1", 10, plan="free", city="Oslo"), event("e2", 30, plan="team")])
    state = apply_command(state, update("c1", 20, set={"plan": "pro", "city": "Bergen"}, unset=[], tags_add=["vip"]))
    assert properties_of(state) == {"plan": "team", "city": "Bergen"}  # the later $set wins plan; the command wins city
    state = apply_command(state, update("c2", 40, unset=["city"], set={"plan": None}, tags_remove=["vip"], tags_add=["churned"]))
    assert properties_of(state) == {} and tags_of(state) == ["churned"]
    assert status_of(apply_command(state, update("c3", 50, status="disabled"))) == "disabled"


writes = st.lists(
    st.one_of(
        st.builds(lambda i, s, v: event(f"e{i}", s, plan=v), st.integers(0, 9), st.integers(0, 50), st.sampled_from(["a", "b", "c"])),
        st.builds(
            lambda i, s, v, tag, status: update(f"c{i}", s, set={"plan": v}, tags_add=[tag], status=status),
            st.integers(0, 9),
            st.integers(0, 50),
            st.sampled_from(["a", "b", None]),
            st.sampled_from(["x", "y"]),
            st.sampled_from(["active", "disabled", None]),
        ),
        st.builds(
            lambda i, s, tag: update(f"r{i}", s, unset=["plan"], tags_remove=[tag]),
            st.integers(0, 9),
            st.integers(0, 50),
            st.sampled_from(["x", "y"]),
        ),
    ),
    max_size=12,
)


def fold_in(order) -> object:
    state = EMPTY
    for item in order:
        state = fold_all(state, [item]) if isinstance(item, EnrichedEvent) else apply_command(state, item)
    return state


def unique_ids(items):
    """One write per id: an event or a command id names one write, as on the topics."""
    seen, kept = set(), []
    for item in items:
        key = getattr(item, "message_id", None) or item.command_id
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


@settings(max_examples=150, deadline=None)
@given(writes, st.randoms(use_true_random=False))
def test_commands_and_events_fold_to_one_profile_in_any_order_and_redelivered(items, rng: random.Random):
    items = unique_ids(items)
    shuffled = items + items[: len(items) // 2]
    rng.shuffle(shuffled)
    one, other = fold_in(items), fold_in(shuffled)
    assert (properties_of(one), tags_of(one), status_of(one)) == (properties_of(other), tags_of(other), status_of(other))
    assert one == type(one).from_json(one.to_json())
