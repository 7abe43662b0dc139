"""Kafka goes away and comes back: the collector says 503 + Retry-After meanwhile, never acknowledges what
Kafka does not have, and takes events again by itself — without a restart."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from segment import analytics

from tests.integration.test_collector_support import raw_events
from tests.pipeline import WRITE_KEY, collector, wait_until

pytestmark = pytest.mark.integration


def test_broker_outage_is_503_with_retry_after_and_the_collector_recovers_alone(local_broker, collector_settings, tmp_path):
    settings = collector_settings.model_copy(update={"data_dir": tmp_path / "data"})
    acknowledged: list[str] = []

    def send(message_id: str) -> httpx.Response:
        body = {"type": "track", "event": "Outage", "anonymousId": "device-1", "messageId": message_id}
        response = httpx.post(f"{url}/v1/track", json=body, auth=(WRITE_KEY, ""), timeout=30)
        if response.status_code == 200:
            acknowledged.append(message_id)
        return response

    with collector(settings, tmp_path / "logs") as url:
        assert send("before").status_code == 200
        try:
            local_broker.stop()
            refused = wait_until(lambda: (r := send("during")).status_code == 503 and r, timeout_s=60, interval_s=0.5, what="a 503")
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["errors"][0]["field"] == "kafka"
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
        finally:
            local_broker.start()  # same ports and state: the session's other tests keep their broker
        wait_until(lambda: send("after").status_code == 200, timeout_s=90, interval_s=1, what="the collector to accept again")
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200

    held = {m.value["message_id"] for m in raw_events(settings)}
    assert set(acknowledged) <= held  # every 200 is in Kafka; a 503'd write may still have landed (deduplicated downstream)
    assert {"before", "after"} <= held


def test_a_real_sdk_that_retries_loses_nothing_across_an_outage(local_broker, collector_settings, tmp_path):
    """Segment's Python library, unchanged and with its own retries, keeps sending while the broker is down:
    it gets 503s with Retry-After, backs off, and once the broker is back every event it was given is in Kafka."""
    settings = collector_settings.model_copy(update={"data_dir": tmp_path / "data"})
    failures: list[Exception] = []
    with collector(settings, tmp_path / "logs") as url:
        client = analytics.Client(
            WRITE_KEY, host=url, upload_size=5, upload_interval=0.1, max_retries=30, on_error=lambda error, batch: failures.append(error)
        )
        client.track(anonymous_id="sdk-device", event="Before outage", message_id="sdk-before")
        client.flush()
        local_broker.stop()
        try:
            for n in range(20):
                client.track(anonymous_id="sdk-device", event="During outage", message_id=f"sdk-during-{n}")
            # The SDK has met the outage: the collector refuses while the broker is away.
            wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 503, 60, what="/readyz to fail")
            time.sleep(3)
        finally:
            local_broker.start()
        client.flush()  # returns once the SDK's queue is empty: sent, or given up (on_error)
        client.shutdown()
        refused = sum(
            sample.value
            for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
            for sample in family.samples
            if sample.name == "footfall_collector_requests_total" and sample.labels.get("status") == "503"
        )

    assert refused > 0  # the SDK did meet the outage, and retried (it re-queues on Retry-After)
    assert failures == []
    held = {m.value["message_id"] for m in raw_events(settings)}
    assert {"sdk-before", *(f"sdk-during-{n}" for n in range(20))} <= held
