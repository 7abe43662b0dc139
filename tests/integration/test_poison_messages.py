"""Poison messages written straight to each topic: every consumer records them on the dead-letter topic with
a reason, keeps going, and never crash-loops."""

from __future__ import annotations

import httpx
import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from tests.integration.test_collector_support import bad_rows
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration

POISON = [b"\xff\xfe not utf-8", b"{not json", b'{"valid": "json", "wrong": "schema"}', b""]


def test_poison_on_every_topic_is_recorded_and_skipped(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    topics = settings.topics
    targets = [topics.raw, topics.sessioned, topics.identity_commands, topics.identities, topics.enriched, topics.sessions, topics.persons]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for spec in targets:
        for payload in POISON:
            producer.produce(spec.name, payload, b"poison-key")
    assert producer.flush(10) == 0

    with collector(settings, tmp_path / "logs") as url, processor(settings, tmp_path / "logs") as worker, projector(settings) as live:
        # a valid event after the poison still goes all the way through
        response = httpx.post(f"{url}/v1/track", json={"anonymousId": "after-poison", "event": "Still works"}, auth=(WRITE_KEY, ""))
        assert response.status_code == 200
        wait_until(
            lambda: (
                clickhouse_client.query(f"SELECT count() FROM {settings.database}.events WHERE anonymous_id = 'after-poison'").result_rows[
                    0
                ][0]
                == 1
            ),
            90,
            what="the valid event in ClickHouse",
            watch=(worker, live),
        )
        processor_topics, projector_topics = 4, 4  # raw, sessioned, identity-commands, identities | enriched, sessions, identities, persons
        expected = len(POISON) * (processor_topics + projector_topics)

        def recorded():
            rows = [m.value for m in bad_rows(settings) if m.value["stage"] in ("processor", "projector")]
            return len(rows) >= expected and rows

        # watch=: the worker and the projector must still be running when the bad rows are all there
        rows = wait_until(recorded, 60, what=f"{expected} bad rows", watch=(worker, live))

    assert all(row["problems"][0]["reason"] for row in rows)
    assert {row["stage"] for row in rows} == {"processor", "projector"}
