"""The load generator's traffic model (pure) and its record/replay files: deterministic, realistic, valid."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import islice

import orjson
import pytest

from footfall.loadgen import encode, fitting, parse_duration, read_calls, write_calls
from footfall.traffic import (
    DESKTOP_USER_AGENTS,
    MOBILE_USER_AGENTS,
    SESSION_GAP_MS,
    Traffic,
    calls,
    parse_iso,
    summarize,
)
from ingest.normalize import Edge, normalize
from schemas.events import RawEvent
from schemas.tracking import MAX_BATCH_BYTES, BatchEnvelope, TrackingCall

EVENTS = 20_000
VISITORS = 300  # few visitors: many come back, so sessions, sign-ups and second devices all show up


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic(7, visitors=VISITORS)


@pytest.fixture(scope="module")
def generated(traffic) -> list[dict]:
    return list(islice(traffic, EVENTS))


def per_device(generated: list[dict]) -> dict[str, list[dict]]:
    devices: dict[str, list[dict]] = defaultdict(list)
    for call in generated:
        devices[call["anonymousId"]].append(call)
    return devices


# -- determinism ------------------------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_calls_and_another_seed_other_calls():
    first = orjson.dumps(list(calls(1, events=3_000)))
    assert orjson.dumps(list(calls(1, events=3_000))) == first
    other = list(calls(2, events=3_000))
    assert orjson.dumps(other) != first
    assert not {c["messageId"] for c in orjson.loads(first)} & {c["messageId"] for c in other}
    assert not {c["anonymousId"] for c in orjson.loads(first)} & {c["anonymousId"] for c in other}


def test_a_longer_run_starts_with_the_shorter_one():
    assert list(calls(5, events=500)) == list(calls(5, events=2_000))[:500]


def test_message_ids_are_unique(generated):
    ids = [c["messageId"] for c in generated]
    assert len(set(ids)) == len(ids) == EVENTS


# -- validity ---------------------------------------------------------------------------------------------


def test_every_call_is_valid_for_the_collector_and_keeps_its_timestamp_as_event_time(generated):
    received = datetime(2026, 3, 1, 12, tzinfo=UTC)
    edge = Edge(source_id="web", received_at=received, ip="198.51.100.7", user_agent="python-httpx")
    for call in generated:
        assert TrackingCall.model_validate(call).type == call["type"]
        # The sender stamps sentAt at send time: the collector's clock correction then keeps the model's time.
        sent = RawEvent.model_validate_json(normalize({**call, "sentAt": received.isoformat()}, edge).value)
        assert sent.timestamp == datetime.fromisoformat(call["timestamp"]) and not sent.flags
        assert sent.message_id == call["messageId"] and sent.device_key == call["anonymousId"]
    # With the model's own sentAt (a few ms after the event) an event lands just before its arrival.
    as_modelled = RawEvent.model_validate_json(normalize(generated[0], edge).value)
    lag = datetime.fromisoformat(generated[0]["sentAt"]) - datetime.fromisoformat(generated[0]["timestamp"])
    assert as_modelled.timestamp == received - lag and timedelta(0) < lag < timedelta(seconds=1)


def test_batches_stay_under_the_collector_s_body_limit_and_validate(generated):
    parts = list(fitting(generated[:2_000]))
    assert len(parts) > 1 and sum(len(p) for p in parts) == 2_000
    for part in parts:
        path, body = encode(part, batch=True, sent_at="2026-03-01T12:00:00.000Z")
        assert path == "/v1/batch" and len(body) <= MAX_BATCH_BYTES
        envelope = BatchEnvelope.model_validate(orjson.loads(body))
        assert [c["messageId"] for c in envelope.batch] == [c["messageId"] for c in part]
        assert {c["sentAt"] for c in envelope.batch} == {"2026-03-01T12:00:00.000Z"}
    path, body = encode(generated[:1], batch=False, sent_at=None)
    assert path == f"/v1/{generated[0]['type']}" and orjson.loads(body) == generated[0]


# -- realism ----------------------------------------------------------------------------------------------


def test_the_mix_has_pages_tracks_identifies_and_aliases_with_referrers_campaigns_and_user_agents(generated):
    types = Counter(c["type"] for c in generated)
    assert set(types) == {"page", "track", "identify", "alias"}
    assert types["page"] > types["track"] > types["identify"] > types["alias"] > 10
    pages = [c for c in generated if c["type"] == "page"]
    assert all(set(c["context"]["page"]) == {"path", "referrer", "search", "title", "url"} for c in generated)
    assert all(c["properties"]["url"] == c["context"]["page"]["url"] for c in pages)
    external = Counter(
        c["properties"]["referrer"]
        for c in pages
        if c["properties"]["referrer"] and not c["properties"]["referrer"].startswith("https://shop.example.com")
    )
    assert {"https://www.google.com/", "https://t.co/", "https://news.ycombinator.com/"} <= set(external)
    campaigns = [c for c in generated if "campaign" in c["context"]]
    assert len(campaigns) > 100
    for call in campaigns:
        url = call["context"]["page"]["url"]
        assert f"utm_source={call['context']['campaign']['source']}" in url and "utm_medium=" in url
    assert {c["context"]["campaign"]["medium"] for c in campaigns} >= {"email", "cpc", "paid_social"}
    agents = Counter(c["context"]["userAgent"] for c in generated)
    assert set(agents) <= {*DESKTOP_USER_AGENTS, *MOBILE_USER_AGENTS} and len(agents) >= 6
    events = Counter(c["event"] for c in generated if c["type"] == "track")
    assert {"Product Viewed", "Product Added", "Order Completed", "Signed Up", "Signed In"} <= set(events)
    order = next(c for c in generated if c.get("event") == "Order Completed")
    assert order["properties"]["revenue"] > 0 and order["properties"]["products"]


def test_visitors_sign_up_part_way_and_some_identify_a_second_device_with_the_same_user_id(generated):
    identified_devices: dict[str, set[str]] = defaultdict(set)
    for call in generated:
        if call["type"] == "identify":
            identified_devices[call["userId"]].add(call["anonymousId"])
            assert "@" in call["traits"]["email"]
    assert len(identified_devices) > 30
    assert sum(len(devices) > 1 for devices in identified_devices.values()) >= 5
    devices = per_device(generated)
    for user_id, anonymous_ids in identified_devices.items():
        for anonymous_id in anonymous_ids:
            history = devices[anonymous_id]
            first_identify = next(i for i, c in enumerate(history) if c["type"] in ("identify", "alias"))
            # Anonymous before, the user id on every call after (as analytics.js does once identified).
            assert all(c.get("userId") == user_id for c in history[first_identify:])
    part_way = [a for ids in identified_devices.values() for a in ids if devices[a][0]["type"] == "page" and "userId" not in devices[a][0]]
    assert len(part_way) == sum(len(ids) for ids in identified_devices.values())
    aliases = [c for c in generated if c["type"] == "alias"]
    assert all(a["previousId"] == a["anonymousId"] and a["userId"] in identified_devices for a in aliases)


def test_timestamps_never_go_back_on_a_device_and_devices_interleave(generated):
    for history in per_device(generated).values():
        stamps = [parse_iso(c["timestamp"]) for c in history]
        assert stamps == sorted(stamps)
        assert all(parse_iso(c["sentAt"]) >= parse_iso(c["timestamp"]) for c in history)
    switches = sum(a["anonymousId"] != b["anonymousId"] for a, b in zip(generated, generated[1:], strict=False))
    assert switches > EVENTS / 2


def test_sessions_are_separated_by_gaps_some_under_30_minutes_some_over(traffic, generated):
    gaps = [
        parse_iso(b["timestamp"]) - parse_iso(a["timestamp"])
        for history in per_device(generated).values()
        for a, b in zip(history, history[1:], strict=False)
    ]
    minute = 60_000
    assert sum(5 * minute <= g < SESSION_GAP_MS for g in gaps) > 50  # pauses inside a session
    assert sum(g >= SESSION_GAP_MS for g in gaps) > 500  # a new session
    assert not [g for g in gaps if 29 * minute < g < 31 * minute]  # no gap the pipeline could read either way
    summary = summarize(generated)
    assert summary.sessions == traffic.sessions == traffic.summary.sessions
    assert summary.devices > summary.sessions / 20  # many devices, each with a few sessions
    span = parse_iso(generated[-1]["timestamp"]) - parse_iso(generated[0]["timestamp"])
    assert span > 24 * 60 * minute  # hours of visitor time


def test_a_few_hot_visitors_get_a_much_larger_share(generated):
    counts = sorted(Counter(c["anonymousId"] for c in generated).values(), reverse=True)
    top = max(1, len(counts) // 100)
    assert sum(counts[:top]) > 0.04 * EVENTS  # the top 1% of devices: well over their 1%
    assert sum(counts[: len(counts) // 10]) > 0.3 * EVENTS  # the top 10%
    assert counts[0] > 20 * statistics.median(counts)
    flat = sorted(Counter(c["anonymousId"] for c in calls(7, events=EVENTS, visitors=VISITORS, skew=0)).values(), reverse=True)
    assert counts[0] > 3 * flat[0]


def test_the_summary_counts_what_was_generated(traffic, generated):
    summary = traffic.summary
    assert summary.calls == EVENTS
    assert summary.by_type == Counter(c["type"] for c in generated)
    assert summary.track_events == Counter(c["event"] for c in generated if c["type"] == "track")
    assert summary.users == len({c["userId"] for c in generated if "userId" in c})
    assert summary.devices == len({c["anonymousId"] for c in generated})
    assert summary.first_timestamp == generated[0]["timestamp"] and summary.last_timestamp == generated[-1]["timestamp"]
    assert summary.as_dict() == summarize(generated).as_dict()


def test_the_simulated_clock_starts_where_told():
    start = datetime(2026, 5, 1, 8, tzinfo=UTC)
    first = next(iter(calls(3, start=start)))
    assert start <= datetime.fromisoformat(first["timestamp"]) < start + timedelta(hours=1)


# -- record and replay ------------------------------------------------------------------------------------


def test_a_written_file_replays_exactly_the_generated_calls(tmp_path, generated):
    path = tmp_path / "traffic.jsonl"
    written = write_calls(path, iter(generated))
    assert list(read_calls(path)) == generated
    assert path.read_bytes() == b"".join(orjson.dumps(c) + b"\n" for c in generated)
    assert written.as_dict() == summarize(generated).as_dict()


def test_a_file_that_is_not_segment_calls_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"type":"page","anonymousId":"a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        list(read_calls(path))


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("45", 45), ("2.5", 2.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_refused():
    with pytest.raises(ValueError):
        parse_duration("soon")
