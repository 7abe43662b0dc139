"""A real SDK, unchanged, against `footfall collector` with two worker processes: Segment's Python library
sends every call type from a device whose clock is two hours fast; Kafka must hold what it meant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from segment import analytics
from segment.analytics.version import VERSION as SDK_VERSION

from tests.integration.test_collector_support import raw_events
from tests.pipeline import WRITE_KEY, collector

pytestmark = pytest.mark.integration

CLIENT_CLOCK_AHEAD = timedelta(hours=2)


def close_to(actual: str, expected: datetime, tolerance_s: float = 3) -> bool:
    return abs(datetime.fromisoformat(actual) - expected) < timedelta(seconds=tolerance_s)


def test_segment_python_sdk_calls_arrive_field_by_field_with_corrected_times(collector_settings, tmp_path):
    settings = collector_settings.model_copy(update={"data_dir": tmp_path / "data"})
    with collector(settings, tmp_path / "logs", workers=2) as url:
        client = analytics.Client(WRITE_KEY, host=url, sync_mode=True, gzip=True, max_retries=0)
        context = {"ip": "203.0.113.5", "campaign": {"source": "newsletter"}}
        with time_machine.travel(datetime.now(UTC) + CLIENT_CLOCK_AHEAD, tick=True):
            happened = datetime.now(UTC) - timedelta(seconds=30)  # by the device's clock
            client.track(
                anonymous_id="anon-sdk",
                user_id="user-sdk",
                event="Order Completed",
                properties={"total": 42.5, "items": [{"sku": "a"}]},
                context=context,
                timestamp=happened,
                message_id="sdk-track",
            )
            client.identify(
                anonymous_id="anon-sdk", user_id="user-sdk", traits={"email": "a@example.com", "plan": "pro"}, message_id="sdk-identify"
            )
            client.page(user_id="user-sdk", name="Pricing", properties={"url": "https://example.com/pricing"}, message_id="sdk-page")
            client.group(user_id="user-sdk", group_id="acme", traits={"employees": 50}, message_id="sdk-group")
            client.alias(previous_id="anon-sdk", user_id="user-sdk", message_id="sdk-alias")
        now = datetime.now(UTC)
        for n in range(10):  # a new connection each: the kernel spreads them over both workers
            httpx.post(
                f"{url}/v1/t", json={"anonymousId": f"spread-{n}", "event": "Spread"}, auth=(WRITE_KEY, ""), timeout=10
            ).raise_for_status()
        metrics_pages = [httpx.get(f"{url}/metrics", timeout=5).text for _ in range(4)]

    events = {m.value["message_id"]: m for m in raw_events(settings) if m.value["event"] != "Spread"}
    assert set(events) == {"sdk-track", "sdk-identify", "sdk-page", "sdk-group", "sdk-alias"}
    assert {m.key for m in events.values()} == {"anon-sdk", "user-sdk"}

    track = events["sdk-track"].value
    assert (events["sdk-track"].key, track["type"], track["event"]) == ("anon-sdk", "track", "Order Completed")
    assert (track["anonymous_id"], track["user_id"]) == ("anon-sdk", "user-sdk")
    assert track["properties"] == {"total": 42.5, "items": [{"sku": "a"}]}
    assert track["context"] == {**context, "library": {"name": "analytics-python", "version": SDK_VERSION}}
    assert (track["source_id"], track["ip"], track["user_agent"]) == ("test-source", "127.0.0.1", f"analytics-python/{SDK_VERSION}")
    # receivedAt − (sentAt − originalTimestamp): 30 s before it arrived, though the device said two hours later.
    assert close_to(track["received_at"], now, 10)
    assert close_to(track["timestamp"], datetime.fromisoformat(track["received_at"]) - timedelta(seconds=30))
    assert close_to(track["original_timestamp"], datetime.fromisoformat(track["received_at"]) + CLIENT_CLOCK_AHEAD - timedelta(seconds=30))
    assert close_to(track["sent_at"], datetime.fromisoformat(track["received_at"]) + CLIENT_CLOCK_AHEAD)
    assert track["flags"] == []

    identify = events["sdk-identify"].value
    assert (identify["type"], identify["traits"], identify["user_id"]) == (
        "identify",
        {"email": "a@example.com", "plan": "pro"},
        "user-sdk",
    )
    page = events["sdk-page"].value
    assert (events["sdk-page"].key, page["event"], page["properties"]) == ("user-sdk", "Pricing", {"url": "https://example.com/pricing"})
    group = events["sdk-group"].value
    assert (group["group_id"], group["traits"]) == ("acme", {"employees": 50})
    alias = events["sdk-alias"].value
    assert (events["sdk-alias"].key, alias["previous_id"], alias["user_id"]) == ("user-sdk", "anon-sdk", "user-sdk")
    for message_id in ("sdk-identify", "sdk-page", "sdk-group", "sdk-alias"):  # sent as they happened
        assert close_to(events[message_id].value["timestamp"], datetime.fromisoformat(events[message_id].value["received_at"]))

    # Two workers, one answer: whichever worker serves /metrics counts every worker's events.
    for page_text in metrics_pages:
        assert 'footfall_collector_events_accepted_total{type="track"} 11.0' in page_text
        assert 'footfall_collector_requests_total{route="/v1/{call}",status="200"} 15.0' in page_text
        assert "footfall_collector_producer_queue_depth" in page_text
