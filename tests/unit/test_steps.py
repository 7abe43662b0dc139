"""The processors' pure steps (processors/steps.py) and their event reader (processors/events.py), no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors import steps
from processors.events import read_event
from processors.identity import IdentityResolver
from processors.records import Keyed
from processors.sessionizer import DeviceState, SessionizerConfig, closing_horizon, earliest_end
from schemas.events import EnrichedEvent, RawEvent
from schemas.identity import DistinctIdMapping, IdentityCommand, person_id_for

CONFIG = SessionizerConfig()
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def raw(message_id: str, minutes: float, device: str = "anon-1", **fields) -> RawEvent:
    fields.setdefault("properties", {"url": f"https://shop.example/{message_id}"})
    return RawEvent(
        message_id=message_id,
        type=fields.pop("type", "page"),
        anonymous_id=device,
        timestamp=T0 + timedelta(minutes=minutes),
        received_at=T0,
        source_id="web",
        **fields,
    )


def keyed(event: RawEvent) -> Keyed:
    payload = event.model_dump_json().encode()
    return Keyed(event.device_key.encode(), read_event(payload), payload)


def run(batches: list[list[RawEvent]], table: dict | None = None, person_of: dict | None = None) -> list[steps.Sessionized]:
    table = {} if table is None else table
    decoded = steps.DecodedStates(table)
    outs = []
    for batch in batches:
        out = steps.sessionize(
            [("record", 0, [keyed(e) for e in batch])], decoded.state_of, (person_of or {}).get, lambda _partition, at: at, CONFIG
        )
        for key, (state, _) in out.states.items():
            table[key] = stored = state.to_json()
            decoded.wrote(key, stored, state)
        outs.append(out)
    return outs


def test_a_batch_writes_each_devices_state_once_and_sends_each_sessions_latest_update_once():
    [out] = run([[raw("a", 0), raw("b", 1), raw("c", 2, device="anon-2"), raw("d", 3)]])
    assert set(out.states) == {b"anon-1", b"anon-2"}
    assert out.states[b"anon-1"][1] == "record"  # written as the record it came with
    updates = [orjson.loads(value) for _, value in out.sessions]
    assert sorted((u["device_key"], u["event_count"]) for u in updates) == [("anon-1", 3), ("anon-2", 1)]
    assert [orjson.loads(v)["session_seq"] for _, v in out.enriched] == [1, 2, 1, 3]


def test_enriched_events_keep_every_field_and_gain_session_and_person():
    event = raw("a", 0, context={"page": {"referrer": "https://www.google.com/"}}, properties={"url": "https://x.example/"})
    [out] = run([[event]])
    [(key, value)] = out.enriched
    enriched = EnrichedEvent.model_validate_json(value)
    assert key == b"anon-1"
    assert enriched.model_dump(exclude={"session_id", "session_seq", "person_id"}) == event.model_dump()
    assert (enriched.session_seq, enriched.person_id) == (1, person_id_for("anon-1"))
    assert enriched.session_id == orjson.loads(out.sessions[0][1])["session_id"]


def test_an_event_whose_distinct_id_is_not_its_device_is_rekeyed_through_sessioned():
    [out] = run([[raw("a", 0, user_id="user-9")]])
    assert out.enriched == []
    [(key, value)] = out.sessioned
    assert key == b"user-9" and orjson.loads(value)["person_id"] is None
    known = {b"user-9": {"person_id": "p-known", "version": 3}}
    [(stamped_key, stamped)] = steps.stamp_persons([Keyed(key, read_event(value), value)], known.get)
    assert stamped_key == b"user-9" and orjson.loads(stamped)["person_id"] == "p-known"


def test_a_duplicate_in_a_later_batch_is_resent_with_the_first_copys_time_and_session():
    first, again = run([[raw("a", 0)], [raw("a", 0.05)]])
    original, copy = orjson.loads(first.enriched[0][1]), orjson.loads(again.enriched[0][1])
    assert copy["timestamp"] == original["timestamp"] == "2026-03-02T12:00:00Z"
    assert (copy["session_id"], copy["session_seq"]) == (original["session_id"], 1)
    assert again.duplicates == 1 and orjson.loads(again.sessions[0][1])["event_count"] == 1


def test_identity_facts_go_to_the_sequencer_keyed_by_the_id_they_are_about():
    [out] = run([[raw("a", 0), raw("b", 1, user_id="user-9", type="identify", traits={"email": "u@example.com"})]])
    commands = [(key, IdentityCommand.model_validate_json(value)) for key, value in out.identity_commands]
    assert [(key, c.kind) for key, c in commands] == [(b"anon-1", "seen"), (b"user-9", "identify")]
    assert commands[1][1].email == "u@example.com"


def test_idle_sessions_end_and_a_device_left_without_sessions_leaves_the_table():
    table: dict = {}
    run([[raw("a", 0), raw("b", 0, device="anon-2")], [raw("c", 200, device="anon-2")]], table)
    ended = steps.end_idle_sessions(table.items(), T0 + timedelta(hours=3), CONFIG)
    assert ended.count == 2 and ended.states[b"anon-1"] is None
    assert len(DeviceState.from_json(ended.states[b"anon-2"]).sessions) == 1
    assert [orjson.loads(v)["status"] for _, v in ended.sessions] == ["ended", "ended"]


def ends_of(table: dict, capacity: int = 1_000_000) -> steps.SessionEnds:
    ends = steps.SessionEnds(capacity)
    for key, stored in table.items():
        ends.note(key, stored, earliest_end(DeviceState.from_json(stored)))
    return ends


def test_the_idle_tick_reads_only_devices_that_may_have_a_session_to_end():
    table: dict = {}
    run([[raw("a", 0), raw("b", 0, device="anon-2")], [raw("c", 200, device="anon-2")]], table)
    ends, horizon = ends_of(table), closing_horizon(T0 + timedelta(hours=3), CONFIG)
    assert [k for k, v in table.items() if ends.may_end(k, v, horizon)] == [b"anon-1", b"anon-2"]  # each has an old session
    ended = steps.end_idle_sessions(table.items(), T0 + timedelta(hours=3), CONFIG)
    for key, (stored, end) in ended.ends.items():
        ends.note(key, stored, end)
        steps.apply_state(table, key, stored)
    assert list(table) == [b"anon-2"] and not ends.may_end(b"anon-2", table[b"anon-2"], horizon)  # its session is recent
    past_it = T0 + timedelta(minutes=200 + 30 + 120, seconds=1)  # its end + gap + allowed lateness, and a second
    assert ends.may_end(b"anon-2", table[b"anon-2"], closing_horizon(past_it, CONFIG))  # until the watermark passes it
    assert ends.may_end(b"anon-2", b"other bytes", horizon)  # a state it did not note is read, as before


@given(
    st.lists(st.tuples(st.sampled_from(["d1", "d2", "d3"]), st.floats(0, 600)), min_size=1, max_size=30),
    st.floats(0, 900),
    st.integers(1, 3),
)
def test_a_device_the_tick_skips_has_nothing_to_end(events, watermark_minutes, capacity):
    """Whatever states, watermark and memory bound: a noted device is read exactly when it has a session to end,
    so skipping never leaves a session unended."""
    table: dict = {}
    run([[raw(f"m{n}", minutes, device=device) for n, (device, minutes) in enumerate(events)]], table)
    ends = ends_of(table, capacity)
    watermark = T0 + timedelta(minutes=watermark_minutes)
    horizon = closing_horizon(watermark, CONFIG)
    for key, stored in table.items():
        has_one_to_end, read = steps.end_idle_sessions([(key, stored)], watermark, CONFIG).count > 0, ends.may_end(key, stored, horizon)
        if capacity >= len(table):  # every device noted: read exactly when it has a session to end
            assert read == has_one_to_end
        else:  # some notes were cleared: those devices are read, so a skip still never misses one
            assert read or not has_one_to_end


def test_the_sequencer_step_publishes_mappings_persons_and_warnings():
    resolver = IdentityResolver({})
    commands = [
        IdentityCommand(kind="seen", message_id="m1:seen", timestamp=T0, distinct_id="anon-1"),
        IdentityCommand(kind="identify", message_id="m2:identify", timestamp=T0, anonymous_id="anon-1", user_id="null"),
    ]
    out = steps.resolve_identities([Keyed(steps.command_key(c), c, c.model_dump_json().encode()) for c in commands], resolver)
    assert [key for key, _ in out.identities] == [b"anon-1"]
    assert out.persons and [(k.key, w.field, w.rule) for k, w in out.warnings] == [(b"null", "user_id", "placeholder_id")]


def test_a_newer_mapping_is_learned_an_older_one_is_not():
    mapping = DistinctIdMapping(distinct_id="u", person_id="p2", version=5)
    assert steps.learn_person(mapping, None) == steps.PersonOfChange({"person_id": "p2", "version": 5})
    assert steps.learn_person(mapping, {"person_id": "p1", "version": 7}) is None


def test_a_deleted_persons_id_is_forgotten_unless_a_newer_mapping_is_known():
    deleted = DistinctIdMapping(distinct_id="u", person_id="p2", version=5, is_deleted=True)
    assert steps.learn_person(deleted, {"person_id": "p2", "version": 4}) == steps.PersonOfChange(None)
    assert steps.learn_person(deleted, {"person_id": "p3", "version": 6}) is None  # the id's fresh person, learned first
    assert steps.learn_person(deleted, None) is None
    table = {b"u": {"person_id": "p2", "version": 4}}
    steps.apply_state(table, b"u", steps.learn_person(deleted, table[b"u"]).entry)
    assert table == {}


def test_a_decoded_state_is_reused_only_while_the_table_holds_the_bytes_it_came_from():
    table: dict = {}
    decoded = steps.DecodedStates(table, capacity=2)
    run([[raw("a", 0)]], table)
    state = DeviceState.from_json(table[b"anon-1"])
    decoded.wrote(b"anon-1", table[b"anon-1"], state)
    assert decoded.state_of(b"anon-1") is state
    table[b"anon-1"] = DeviceState("anon-1", ()).to_json()  # recovered from the changelog, say
    assert decoded.state_of(b"anon-1") == DeviceState("anon-1", ())
    assert decoded.state_of(b"anon-9") is None


def test_pending_states_are_read_before_the_table_and_handed_over_once():
    table: dict = {}
    pending: steps.PendingStates[str] = steps.PendingStates(steps.DecodedStates(table), capacity=2)
    stored = DeviceState("anon-1", ())
    table[b"anon-1"] = stored.to_json()
    [out] = run([[raw("a", 0)]], {})  # a newer state of anon-1, not yet written
    newer = out.states[b"anon-1"][0]
    assert b"anon-1" not in pending and pending.state_of(b"anon-1") == stored
    pending.hold({b"anon-1": (newer, "record")})
    assert b"anon-1" in pending and pending.state_of(b"anon-1") is newer and not pending.full
    pending.hold({b"anon-2": (newer, "record")})
    assert pending.full
    assert pending.take() == {b"anon-1": (newer, "record"), b"anon-2": (newer, "record")}
    assert pending.take() == {} and b"anon-1" not in pending and pending.state_of(b"anon-1") == stored


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"[1, 2]", "object"),
        (b'{"type": "page"}', "message_id"),
        (b'{"message_id": "m", "type": "page", "timestamp": "yesterday", "source_id": "s"}', "timestamp"),
        (b'{"message_id": "m", "type": "page", "timestamp": "2026-03-02T12:00:00", "source_id": "s"}', "timestamp"),
        (b'{"message_id": "m", "type": "page", "timestamp": "2026-03-02T12:00:00Z", "source_id": "s", "traits": []}', "traits"),
        (b'{"message_id": "m", "type": "page", "timestamp": "2026-03-02T12:00:00Z"}', "source_id"),
    ],
)
def test_what_the_processors_cannot_use_is_refused_naming_the_field(payload, field):
    with pytest.raises(ValueError, match=field):
        read_event(payload)


ids = st.one_of(st.none(), st.sampled_from(["", "anon-1", "user-2", "undefined", "  NULL ", "'0'"]))


@given(ids, ids, ids, st.datetimes(timezones=st.just(UTC)))
def test_the_reader_sees_what_the_collectors_model_says(anonymous_id, user_id, previous_id, timestamp):
    event = RawEvent(
        message_id="m",
        type="track",
        anonymous_id=anonymous_id,
        user_id=user_id,
        previous_id=previous_id,
        timestamp=timestamp,
        received_at=T0,
        source_id="web",
    )
    view = read_event(event.model_dump_json().encode())
    assert (view.device_key, view.distinct_id, view.timestamp) == (event.device_key, event.distinct_id, event.timestamp)
    assert orjson.loads(view.with_fields()) == orjson.loads(event.model_dump_json())
