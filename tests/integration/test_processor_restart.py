"""A processor killed mid-stream (kill -9) and restarted: sessions equal those of a run without the restart."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.events import RawEvent
from tests.pipeline import WRITE_KEY, collector, final_sessions, processor, projector, topic_message_ids, wait_until

pytestmark = pytest.mark.integration


def traffic(seed: int, devices: int, events_per_device: int) -> list[dict]:
    """Visits separated by gaps under and over 30 minutes, all within 90 minutes (nothing is late)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    calls = []
    for d in range(devices):
        moment = start + timedelta(seconds=rng.uniform(0, 60))
        for n in range(events_per_device):
            moment += timedelta(minutes=rng.choice([1, 3, 10, 31, 45])) / 8
            calls.append(
                {
                    "type": "page" if n % 3 else "track",
                    "event": "Clicked",
                    "anonymousId": f"dev-{seed}-{d}",
                    "timestamp": moment.isoformat(),
                    "messageId": f"m-{seed}-{d}-{n}",
                }
            )
    rng.shuffle(calls)  # interleave devices; each device keeps its own order below
    calls.sort(key=lambda c: int(c["messageId"].rsplit("-", 1)[1]) // 5)
    return calls


def expected_sessions(calls: list[dict]) -> set[tuple[str, int]]:
    """The pure sessionizer over the same per-device order: what a run without faults must produce."""
    now = datetime.now(UTC)
    events = (
        RawEvent(
            message_id=call["messageId"],
            type=call["type"],
            event=call.get("event"),
            anonymous_id=call["anonymousId"],
            timestamp=datetime.fromisoformat(call["timestamp"]),
            received_at=now,
            source_id="test-source",
        )
        for call in calls
    )
    return {(session_id, update.event_count) for session_id, update in final_sessions(events).items()}


def where_missing_events_stopped(settings, clickhouse_client, calls: list[dict]) -> str:
    """For a failure: which events are missing, and the last topic each one reached."""
    stored = {row[0] for row in clickhouse_client.query(f"SELECT message_id FROM {settings.database}.events").result_rows}
    missing = sorted({c["messageId"] for c in calls} - stored)
    raw = set(topic_message_ids(settings, settings.topics.raw.name))
    enriched = set(topic_message_ids(settings, settings.topics.enriched.name))
    return (
        f"{len(missing)} events missing from ClickHouse: {missing[:20]}; on raw: {sum(m in raw for m in missing)}, "
        f"on enriched: {sum(m in enriched for m in missing)}"
    )


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sessions_survive_a_killed_processor(settings, clickhouse_client, tmp_path, store):
    settings = settings.model_copy(update={"processor_store": store})
    calls = traffic(seed=7, devices=12, events_per_device=20)
    half = len(calls) // 2
    db = settings.database

    def events_stored() -> int:
        from projections.replay import end_offsets

        stored = clickhouse_client.query(f"SELECT count() FROM {db}.events FINAL").result_rows[0][0]
        ends = end_offsets(settings, [settings.topics.raw.name, settings.topics.enriched.name])
        # the last line shows in a failure's captured output
        print(f"{stored} events stored; topic ends {ends}; projector committed {projection.committed}")
        return stored

    def send(batch: list[dict]) -> None:
        response = httpx.post(f"{url}/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=30)
        assert response.status_code == 200 and response.json()["accepted"] == len(batch), response.text

    with collector(settings, tmp_path / "logs") as url, projector(settings) as projection:
        with processor(settings, tmp_path / "logs-1") as first:
            send(calls[:half])
            wait_until(lambda: events_stored() >= half // 2, 90, what="the first worker to be mid-stream", watch=(first, projection))
            first.kill9()
        send(calls[half:])
        with processor(settings, tmp_path / "logs-2") as second:
            try:
                wait_until(
                    lambda: events_stored() == len(calls), 120, what=f"all {len(calls)} events in ClickHouse", watch=(second, projection)
                )
            except AssertionError as exc:
                raise AssertionError(where_missing_events_stopped(settings, clickhouse_client, calls)) from exc

            def stored() -> set:
                return set(clickhouse_client.query(f"SELECT session_id, event_count FROM {db}.sessions FINAL").result_rows)

            wait_until(
                lambda: stored() == expected_sessions(calls),
                60,
                what="sessions equal to a run without the kill",
                watch=(second, projection),
            )
            # A worker that finds records skipped around its rebalance stops and is restarted (continuity.py).
            print(f"second worker restarted {second.restarts} times after stopping itself")

    counted = clickhouse_client.query(f"SELECT sum(event_count) FROM {db}.sessions FINAL").result_rows[0][0]
    assert counted == len(calls)  # nothing lost, nothing counted twice
