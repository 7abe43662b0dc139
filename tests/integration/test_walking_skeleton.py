"""One event path end to end on real infrastructure: HTTP → collector → Kafka → faust → projector → ClickHouse."""

from __future__ import annotations

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from projections.read_api import create_read_app
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration


def scrape(page: TestClient) -> dict[tuple[str, tuple], float]:
    """The projector's /metrics (its read API) as {(sample name, labels): value}."""
    answer = page.get("/metrics")
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(answer.text) for s in family.samples
    }


def test_track_identify_and_page_arrive_in_clickhouse(settings, clickhouse_client, tmp_path):
    metrics_page = TestClient(create_read_app(clickhouse_client, "admin-key"))
    before = scrape(metrics_page)
    with collector(settings, tmp_path / "logs") as url, processor(settings, tmp_path / "logs") as worker, projector(settings) as projection:
        auth = (WRITE_KEY, "")
        calls = [
            ("/v1/track", {"anonymousId": "anon-1", "event": "Signed Up", "properties": {"plan": "pro"}, "messageId": "m-track"}),
            (
                "/v1/identify",
                {"anonymousId": "anon-1", "userId": "user-1", "traits": {"email": "a@example.com"}, "messageId": "m-identify"},
            ),
            (
                "/v1/page",
                {"userId": "user-1", "name": "Pricing", "properties": {"url": "https://example.com/pricing"}, "messageId": "m-page"},
            ),
        ]
        for path, body in calls:
            response = httpx.post(url + path, json=body, auth=auth, timeout=10)
            assert response.status_code == 200, response.text
            assert response.json()["success"] is True

        def rows():
            return clickhouse_client.query(
                f"SELECT message_id, type, event, distinct_id, anonymous_id, user_id, properties, traits, source_id "
                f"FROM {settings.database}.events FINAL WHERE type != 'profile_change' ORDER BY message_id"
            ).result_rows

        found = wait_until(lambda: len(rows()) == 3 and rows(), timeout_s=90, what="3 rows in events", watch=(worker, projection))

    after = scrape(metrics_page)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    # the projector's metrics counted the rows, the batches, the inserts and each event's freshness
    assert grew("footfall_projector_rows_written_total", table="events") >= 3
    assert grew("footfall_projector_freshness_seconds_count") >= 3
    assert grew("footfall_projector_freshness_seconds_bucket", le="900.0") == grew("footfall_projector_freshness_seconds_count")
    assert grew("footfall_projector_insert_seconds_count", table="events") >= 1
    assert grew("footfall_projector_batch_messages_sum") >= 3

    by_id = {row[0]: row for row in found}
    assert by_id["m-track"][1:6] == ("track", "Signed Up", "anon-1", "anon-1", "")
    assert orjson.loads(by_id["m-track"][6]) == {"plan": "pro"}
    assert by_id["m-identify"][1] == "identify"
    assert by_id["m-identify"][3] == "user-1"  # the distinct id of an identified call is the user id
    assert orjson.loads(by_id["m-identify"][7]) == {"email": "a@example.com"}
    assert by_id["m-page"][1:4] == ("page", "Pricing", "user-1")
    assert {row[8] for row in found} == {"test-source"}
