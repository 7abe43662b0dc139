"""Reading a record into its events (processors/records.py): envelopes and single events, bad events alone,
and the partition invariant."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.records import EventSlices, Keyed, read_record
from schemas.envelope import COUNT_HEADER, VERSION_HEADER, EnvelopeLimits, pack, partition_for

PARTITIONS = 4


def decode(payload: bytes) -> dict:
    event = orjson.loads(payload)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(event, dict) or "id" not in event:
        raise ValueError("an event needs an id")
    return event


def key_of(event: dict) -> bytes:
    return event["id"].encode()


def ids_on(partition: int, count: int) -> list[str]:
    return [i for i in (f"device-{n}" for n in range(10_000)) if partition_for(i.encode(), PARTITIONS) == partition][:count]


def read(value, headers, partition, key=b"record-key"):
    return read_record(key, value, headers, partition, PARTITIONS, decode, key_of, "Event")


def test_a_single_event_record_is_one_event_under_the_record_key_wherever_it_is():
    read_back = read(b'{"id": "a"}', None, partition=3, key=b"the-key")
    assert [(k.key, k.event, k.payload) for k in read_back.events] == [(b"the-key", {"id": "a"}, b'{"id": "a"}')]
    assert read_back.refusals == []


def test_a_bad_single_event_record_is_refused_with_its_bytes_and_reason():
    read_back = read(b"{not json", None, partition=0)
    assert read_back.events == []
    [refusal] = read_back.refusals
    assert (refusal.key, refusal.payload, refusal.field) == (b"record-key", b"{not json", "Event")
    assert refusal.reason.startswith("not a Event:")


def test_an_envelope_yields_its_events_in_order_each_under_its_own_key():
    ids = ids_on(2, 5)
    [envelope] = pack([orjson.dumps({"id": i, "n": n}) for n, i in enumerate(ids)])
    read_back = read(envelope.value, envelope.headers, partition=2)
    assert [k.key for k in read_back.events] == [i.encode() for i in ids]
    assert [k.event["n"] for k in read_back.events] == list(range(5))
    assert read_back.refusals == []


def test_a_bad_event_inside_an_envelope_is_refused_alone():
    good = ids_on(1, 2)
    payloads = [orjson.dumps({"id": good[0]}), b'{"no": "id"}', b"\xff\xfe", orjson.dumps({"id": good[1]})]
    [envelope] = pack(payloads)
    read_back = read(envelope.value, envelope.headers, partition=1)
    assert [k.event["id"] for k in read_back.events] == good
    assert [r.payload for r in read_back.refusals] == [b'{"no": "id"}', b"\xff\xfe"]
    assert all(r.field == "Event" and r.reason for r in read_back.refusals)


def test_an_event_of_another_partition_is_refused_and_never_handled_here():
    here, elsewhere = ids_on(0, 1)[0], ids_on(3, 1)[0]
    [envelope] = pack([orjson.dumps({"id": here}), orjson.dumps({"id": elsewhere})])
    read_back = read(envelope.value, envelope.headers, partition=0)
    assert [k.key for k in read_back.events] == [here.encode()]
    [refusal] = read_back.refusals
    assert (refusal.key, refusal.field) == (elsewhere.encode(), "envelope_partition")
    assert "partition 3" in refusal.reason and "partition 0" in refusal.reason


def test_an_envelope_that_cannot_be_read_is_refused_whole():
    headers = [(VERSION_HEADER, b"2"), (COUNT_HEADER, b"1")]
    read_back = read(b'{"id": "a"}', headers, partition=0)
    assert read_back.events == []
    assert [(r.payload, r.field) for r in read_back.refusals] == [(b'{"id": "a"}', "envelope_version")]
    miscounted = read(b'{"id": "a"}\n{"id": "b"}', [(VERSION_HEADER, b"1"), (COUNT_HEADER, b"3")], partition=0)
    assert miscounted.events == [] and [r.field for r in miscounted.refusals] == ["envelope_count"]


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 10), st.integers(0, PARTITIONS - 1))
def test_every_event_is_either_handled_on_its_own_partition_or_refused_never_both(numbers, max_events, partition):
    payloads = [orjson.dumps({"id": f"device-{n}"}) for n in numbers]
    handled, refused = [], []
    for envelope in pack(payloads, EnvelopeLimits(max_events=max_events)):
        read_back = read(envelope.value, envelope.headers, partition)
        handled += [k.payload for k in read_back.events]
        refused += [r.payload for r in read_back.refusals]
    assert sorted(handled + refused) == sorted(payloads)
    assert all(partition_for(decode(p)["id"].encode(), PARTITIONS) == partition for p in handled)
    assert all(partition_for(decode(p)["id"].encode(), PARTITIONS) != partition for p in refused)


@given(st.lists(st.integers(0, 12), max_size=12), st.integers(1, 10))
def test_slices_keep_every_event_in_order_and_hold_at_most_the_bound(record_sizes, max_events):
    slices = EventSlices(max_events)
    records = [[Keyed(b"k", (n, i), b"") for i in range(size)] for n, size in enumerate(record_sizes)]
    full = [s for n, events in enumerate(records) for s in slices.add(f"record-{n}", n % 3, events)]
    rest = slices.rest()
    cut = [*full, rest]
    assert [k.event for s in cut for _, _, events in s for k in events] == [k.event for events in records for k in events]
    assert all(sum(len(events) for _, _, events in s) == max_events for s in full)
    assert sum(len(events) for _, _, events in rest) < max_events or not rest
    # every piece stays with the record (and partition) it came from
    assert all(
        (source, partition) == (f"record-{k.event[0]}", k.event[0] % 3) for s in cut for source, partition, events in s for k in events
    )


def test_one_envelope_larger_than_a_slice_is_cut_inside_it():
    slices = EventSlices(2)
    events = [Keyed(b"k", i, b"") for i in range(5)]
    full = slices.add("envelope", 0, events)
    assert [[k.event for _, _, part in s for k in part] for s in full] == [[0, 1], [2, 3]]
    assert [[k.event for k in part] for _, _, part in slices.rest()] == [[4]]
    with pytest.raises(ValueError):
        EventSlices(0)
