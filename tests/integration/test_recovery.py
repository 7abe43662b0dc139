"""`footfall recover`: a batch of refused calls, fixed and sent again through the collector's validation, is
counted once, even when the recovery runs twice (real broker, processor worker, projector and ClickHouse)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson
import pytest
from confluent_kafka import KafkaException

from footfall.lag import consumer_lag
from footfall.supervisor import settings_env
from footfall.topics import ensure_topics
from tests.infra import wait_for_leaders
from tests.integration.test_collector_support import NO_TESTCLIENT_WARNING, running_collector
from tests.pipeline import processor, projector, wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]

KEY = "wk-recover"
FIX = textwrap.dedent('''
    def fix(payload, row):
        """Track calls sent without an event name: the name was in properties.intended."""
        intended = payload.get("properties", {}).get("intended")
        if intended == "skip":
            return None
        return {**payload, "event": intended} if intended else payload
''')


def recover(settings, fix_path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "footfall",
            "recover",
            "--kind",
            "schema_violation",
            "--since",
            "2020-01-01",
            "--fix",
            str(fix_path),
            "--json",
        ],
        env=settings_env(settings, FOOTFALL_WRITE_KEYS=f"{KEY}=web"),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return orjson.loads(done.stdout.splitlines()[-1])


def test_a_recovered_batch_is_counted_once_even_when_recovered_twice(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    wait_for_leaders(settings.kafka_bootstrap_servers)
    fix_path = tmp_path / "fix.py"
    fix_path.write_text(FIX)
    device = {"anonymousId": "rec-device", "context": {"page": {"url": "https://shop.example/"}}}
    batch = [
        {**device, "type": "track", "event": "Landed", "messageId": "rec-ok"},
        *[{**device, "type": "track", "messageId": f"rec-{n}", "properties": {"intended": "Bought", "n": n}} for n in range(4)],
        {**device, "type": "track", "properties": {"intended": "Bought", "n": "no id"}},  # the collector would give it a random id
        {**device, "type": "track", "messageId": "rec-unfixable", "properties": {}},  # still no event after the fix
        {**device, "type": "track", "messageId": "rec-skip", "properties": {"intended": "skip"}},
        {"type": "track", "event": "E", "anonymousId": "undefined", "messageId": "rec-placeholder"},  # another kind: not selected
    ]
    db = settings.database

    def count(sql: str) -> int:
        return clickhouse_client.query(sql).result_rows[0][0]

    with (
        running_collector(settings, tmp_path, [{"id": "web", "write_key": KEY}]) as client,
        processor(settings, tmp_path / "logs") as worker,
        projector(settings) as live,
    ):
        answer = client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": KEY})
        assert answer.status_code == 200 and answer.json()["accepted"] == 1 and len(answer.json()["rejected"]) == len(batch) - 1
        wait_until(
            lambda: count(f"SELECT count() FROM {db}.bad_rows FINAL") == len(batch) - 1, 90, what="the bad rows", watch=(worker, live)
        )

        first = recover(settings, fix_path)
        assert (first["fixed"], first["still_bad"], first["skipped"]) == (5, 1, 1)
        assert first["still_bad_rows"][0]["problems"][0]["field"] == "event"
        wait_until(
            lambda: count(f"SELECT count() FROM {db}.events FINAL WHERE event = 'Bought'") == 5,
            90,
            what="the recovered events",
            watch=(worker, live),
        )

        second = recover(settings, fix_path)
        assert second == first  # the same calls, with the same ids, again
        # Once the second copies went all the way through (each stage's group committed up to the end) ...
        topics = settings.topics

        def caught_up(group: str, names: list[str]) -> bool:
            try:
                return all(
                    row.lag == 0 for row in consumer_lag(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}-{group}", names)
                )
            except KafkaException:  # a partition between leaders on a busy broker: ask again
                return False

        wait_until(lambda: caught_up("processor", [topics.raw.name, topics.sessioned.name]), 90, what="the processor", watch=(worker, live))
        wait_until(
            lambda: caught_up("projector", [topics.enriched.name, topics.sessions.name]), 90, what="the projector", watch=(worker, live)
        )

    # ... every recovered event is counted once: in events, in the daily counts and in the person's profile.
    ids = clickhouse_client.query(
        f"SELECT message_id, count() FROM {db}.events FINAL WHERE event = 'Bought' GROUP BY message_id"
    ).result_rows
    assert len(ids) == 5 and all(n == 1 for _, n in ids)
    assert {"rec-0", "rec-1", "rec-2", "rec-3"} <= {message_id for message_id, _ in ids}
    assert count(f"SELECT sum(count) FROM {db}.event_counts_daily WHERE event = 'Bought'") == 5
    assert count(f"SELECT event_count FROM {db}.persons FINAL WHERE NOT is_deleted") == 6  # Landed + 5 recovered
    assert count(f"SELECT count() FROM {db}.sessions FINAL") == 1
