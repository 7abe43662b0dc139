"""The collector's flush window (ingest.flush_window) and how a request's answer waits for its envelopes
(ingest.kafka_writer's accounting): any requests, any window ends, any acknowledgement order."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ingest.flush_window import FlushWindow, Sealed
from ingest.kafka_writer import _EnvelopeDelivery, _PendingWrite
from schemas.envelope import EnvelopeLimits, partition_for, unpack

keys = st.sampled_from([f"anon-{n}".encode() for n in range(12)] + ["ключ".encode(), b"u"])
# ("add", request, key, padding) adds one event of `request`; ("end",) ends the window.
steps = st.lists(st.one_of(st.tuples(st.just("add"), st.integers(0, 5), keys, st.integers(0, 60)), st.just(("end",))), max_size=80)
limits = st.builds(EnvelopeLimits, max_events=st.integers(1, 8), max_bytes=st.integers(1, 300))
partition_counts = st.integers(1, 6)


def event(n: int, key: bytes, padding: int) -> bytes:
    return orjson.dumps({"n": n, "key": key.decode(), "pad": "x" * padding})


def run(steps, partitions: int, bounds: EnvelopeLimits) -> tuple[list[tuple[bytes, bytes, int]], list[Sealed[int]]]:
    """Play the steps; every event added (key, bytes, owner) and every envelope sealed, in order."""
    window: FlushWindow[int] = FlushWindow(partitions, bounds)
    added, sealed = [], []
    for step in steps:
        if step[0] == "end":
            sealed += window.seal_all()
            continue
        _, owner, key, padding = step
        value = event(len(added), key, padding)
        added.append((key, value, owner))
        sealed += window.add(key, value, owner)
    sealed += window.seal_all()
    assert not window
    return added, sealed


def by_bytes(added) -> dict[bytes, tuple[bytes, int]]:
    return {value: (key, owner) for key, value, owner in added}


@given(steps, partition_counts, limits)
def test_every_event_is_in_exactly_one_envelope_of_its_own_partition_in_arrival_order(plan, partitions, bounds):
    added, sealed = run(plan, partitions, bounds)
    written = [(s.partition, value) for s in sealed for value in unpack(s.envelope.value, s.envelope.headers)]
    assert sorted(value for _, value in written) == sorted(value for _, value, _ in added)
    known = by_bytes(added)
    for partition, value in written:
        assert partition == partition_for(known[value][0], partitions)
    for partition in range(partitions):
        in_arrival_order = [value for key, value, _ in added if partition_for(key, partitions) == partition]
        assert [value for p, value in written if p == partition] == in_arrival_order


@given(steps, partition_counts, limits)
def test_envelopes_keep_the_limits_unless_one_event_alone_is_larger(plan, partitions, bounds):
    _, sealed = run(plan, partitions, bounds)
    for s in sealed:
        assert 1 <= s.envelope.count <= bounds.max_events
        assert len(s.envelope.value) <= bounds.max_bytes or s.envelope.count == 1


@given(steps, partition_counts, limits)
def test_each_envelope_names_how_many_events_of_each_request_it_holds(plan, partitions, bounds):
    added, sealed = run(plan, partitions, bounds)
    known = by_bytes(added)
    for s in sealed:
        owners: dict[int, int] = {}
        for value in unpack(s.envelope.value, s.envelope.headers):
            owners[known[value][1]] = owners.get(known[value][1], 0) + 1
        assert s.owners == owners


@given(st.lists(st.tuples(st.integers(0, 20), keys), min_size=1, max_size=60), partition_counts)
def test_requests_of_one_window_share_one_envelope_per_partition(requests, partitions):
    """Single-event requests from many clients within one window: as many records as partitions they touch."""
    window: FlushWindow[int] = FlushWindow(partitions, EnvelopeLimits())
    for n, (owner, key) in enumerate(requests):
        assert window.add(key, event(n, key, 0), owner) == []
    sealed = window.seal_all()
    assert sorted(s.partition for s in sealed) == sorted({partition_for(key, partitions) for _, key in requests})


def test_a_full_envelope_is_sealed_at_once_and_the_rest_waits_for_the_window():
    window: FlushWindow[str] = FlushWindow(1, EnvelopeLimits(max_events=3))
    assert [window.add(b"k", event(n, b"k", 0), "a") for n in range(2)] == [[], []]
    [full] = window.add(b"k", event(2, b"k", 0), "b")
    assert (full.envelope.count, full.owners) == (3, {"a": 2, "b": 1})
    assert window.add(b"k", event(3, b"k", 0), "b") == []
    assert window.events == 1
    [rest] = window.seal_all()
    assert (rest.envelope.count, rest.owners) == (1, {"b": 1})


def test_an_event_that_would_overflow_the_bytes_seals_the_envelope_before_it():
    first, second = event(0, b"k", 40), event(1, b"k", 40)
    window: FlushWindow[str] = FlushWindow(1, EnvelopeLimits(max_bytes=len(first) + len(second)))  # no room for the newline
    assert window.add(b"k", first, "a") == []
    [sealed] = window.add(b"k", second, "a")
    assert unpack(sealed.envelope.value, sealed.envelope.headers) == [first]
    assert [unpack(s.envelope.value, s.envelope.headers) for s in window.seal_all()] == [[second]]


# -- a request's answer: settled once every envelope holding one of its events is acknowledged ------------


@given(steps, partition_counts, limits, st.randoms(use_true_random=False), st.integers(0, 6))
def test_a_request_is_settled_exactly_when_the_last_envelope_holding_its_events_is_acknowledged(plan, partitions, bounds, rnd, failing):
    """Replays the writer's accounting (`outstanding` events become records as envelopes are sealed) against
    envelopes acknowledged in any order, one of them possibly failed: no answer before the last of its records."""
    added, sealed = run(plan, partitions, bounds)
    loop = asyncio.new_event_loop()
    try:
        events_of: dict[int, int] = {}
        for _, _, owner in added:
            events_of[owner] = events_of.get(owner, 0) + 1
        pending = {owner: _PendingWrite(loop.create_future(), count, 0.0) for owner, count in events_of.items()}
        deliveries = []
        for s in sealed:  # as KafkaWriter._produce_envelope does
            for owner, count in s.owners.items():
                pending[owner].outstanding -= count - 1
            deliveries.append((set(s.owners), _EnvelopeDelivery(tuple(pending[owner] for owner in s.owners))))
        assert not any(p.future.done() for p in pending.values())
        rnd.shuffle(deliveries)
        unacknowledged = {owner: sum(owner in owners for owners, _ in deliveries) for owner in pending}
        failed: set[int] = set()
        for position, (owners, deliver) in enumerate(deliveries):
            error = "refused" if position == failing else None
            deliver(error)
            if error:
                failed |= owners
            for owner in owners:
                unacknowledged[owner] -= 1
            for owner, write in pending.items():
                assert write.future.done() == (unacknowledged[owner] == 0)
                if write.future.done():
                    assert write.future.result() == ("refused" if owner in failed else None)
    finally:
        loop.close()
