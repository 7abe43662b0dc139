"""The envelope format (schemas/envelope.py): any split round-trips, limits hold, old single records still read."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import (
    COUNT_HEADER,
    VERSION_HEADER,
    EnvelopeError,
    EnvelopeLimits,
    is_envelope,
    pack,
    pack_by_partition,
    partition_for,
    unpack,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
events = st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(orjson.dumps), max_size=40)
limits = st.builds(EnvelopeLimits, max_events=st.integers(1, 12), max_bytes=st.integers(1, 400))


@given(events, limits)
def test_any_events_packed_under_any_limits_read_back_the_same_bytes_in_order(items, bounds):
    envelopes = list(pack(items, bounds))
    read = [event for envelope in envelopes for event in unpack(envelope.value, envelope.headers)]
    assert read == items
    assert sum(envelope.count for envelope in envelopes) == len(items)


@given(events, limits)
def test_an_envelope_keeps_within_both_limits_unless_one_event_alone_is_larger(items, bounds):
    for envelope in pack(items, bounds):
        assert 1 <= envelope.count <= bounds.max_events
        assert len(envelope.value) <= bounds.max_bytes or envelope.count == 1


@given(events, limits)
def test_packing_fills_envelopes_greedily(items, bounds):
    """No envelope could have taken the next one's first event: as few records as the limits allow."""
    envelopes = list(pack(items, bounds))
    for current, following in zip(envelopes, envelopes[1:], strict=False):
        first = unpack(following.value, following.headers)[0]
        assert current.count == bounds.max_events or len(current.value) + 1 + len(first) > bounds.max_bytes


def test_a_record_without_the_envelope_header_is_one_event_as_before():
    value = orjson.dumps({"message_id": "m1", "text": "a\nb"})
    assert unpack(value, None) == [value]
    assert unpack(value, [("other", b"x")]) == [value]
    assert not is_envelope([("other", b"x")])


def test_headers_are_read_from_pairs_and_from_mappings():
    (envelope,) = pack([b"{}", b"[]"])
    assert unpack(envelope.value, dict(envelope.headers)) == [b"{}", b"[]"]
    assert unpack(envelope.value, [(k, v.decode()) for k, v in envelope.headers]) == [b"{}", b"[]"]


def test_an_unknown_version_is_refused_with_its_rule():
    with pytest.raises(EnvelopeError) as refused:
        unpack(b"{}", [(VERSION_HEADER, b"2"), (COUNT_HEADER, b"1")])
    assert refused.value.rule == "envelope_version"


@pytest.mark.parametrize("count", [b"3", None, b"x"])
def test_a_count_that_does_not_match_the_events_is_refused(count):
    headers = [(VERSION_HEADER, b"1")] + ([(COUNT_HEADER, count)] if count is not None else [])
    with pytest.raises(EnvelopeError) as refused:
        unpack(b"{}\n{}", headers)
    assert refused.value.rule == "envelope_count"


def test_an_event_with_a_raw_newline_cannot_be_packed():
    with pytest.raises(ValueError):
        list(pack([b'{"a":\n1}']))


def test_partition_for_spreads_keys_over_every_partition_and_stays_in_range():
    keys = [f"device-{i}".encode() for i in range(200)] + ["ünïcode".encode()]
    assert {partition_for(key, 4) for key in keys} == {0, 1, 2, 3}


@given(
    st.lists(st.tuples(st.sampled_from([b"a", b"b", b"device-7", b"\xc3\xbc"]), st.integers(0, 99)), max_size=40), st.integers(1, 5), limits
)
def test_packed_by_partition_every_event_lands_on_its_keys_partition_in_order(keyed, partitions, bounds):
    records = [(key, orjson.dumps({"k": key.decode(), "n": n})) for key, n in keyed]
    landed: dict[int, list[bytes]] = {}
    for partition, envelope in pack_by_partition(records, partitions, bounds):
        landed.setdefault(partition, []).extend(unpack(envelope.value, envelope.headers))
    expected: dict[int, list[bytes]] = {}
    for key, event in records:
        expected.setdefault(partition_for(key, partitions), []).append(event)
    assert landed == expected


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_murmur2_is_kafkas_murmur2_for_any_key(key):
    """The fast murmur2 agrees with aiokafka's (Java's port) on every key length and byte."""
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from schemas.envelope import murmur2

    assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF
    assert 0 <= murmur2(key) <= 0xFFFFFFFF


def test_murmur2_matches_javas_known_values():
    """Values from Kafka's own partitioner test (Utils.murmur2 of these strings, as signed Java ints)."""
    from schemas.envelope import murmur2

    known = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {key: murmur2(key) - (1 << 32) if murmur2(key) >= 1 << 31 else murmur2(key) for key in known} == known
