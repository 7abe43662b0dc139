"""Envelopes on the processors' input topics, written straight to Kafka: each event is handled as if it had a
record of its own, a bad event is dead-lettered alone, and an event on the wrong partition is dead-lettered
with its reason instead of landing in another partition's state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from schemas.envelope import EnvelopeLimits, pack, partition_for
from schemas.events import EnrichedEvent, RawEvent
from tests.integration.test_collector_support import bad_rows
from tests.pipeline import processor, projector, wait_until

pytestmark = pytest.mark.integration
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def raw(device: str, minute: int, **fields) -> RawEvent:
    return RawEvent(
        message_id=f"{device}-{minute}",
        type="page",
        anonymous_id=device,
        timestamp=T0 + timedelta(minutes=minute),
        received_at=T0 + timedelta(minutes=minute),
        properties={"url": f"https://shop.example/{minute}"},
        source_id="test",
        **fields,
    )


def devices_on(partition: int, partitions: int, count: int, prefix: str) -> list[str]:
    found = (f"{prefix}-{n}" for n in range(100_000))
    return [d for d in found if partition_for(d.encode(), partitions) == partition][:count]


def test_enveloped_events_are_sessionized_one_by_one_and_strays_are_dead_lettered(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    topics, db, partitions = settings.topics, settings.database, settings.partitions
    run = uuid.uuid4().hex[:6]
    here = devices_on(1, partitions, 3, f"env-{run}")
    stray = devices_on(2, partitions, 1, f"stray-{run}")[0]  # the tests run 3 partitions (at least)
    user = f"user-{run}"
    events = [raw(device, minute) for minute in (0, 5, 50) for device in here]  # two sessions per device
    events.append(raw(here[0], 6, user_id=user))  # re-keyed through `sessioned` by its user id
    payloads = [e.model_dump_json().encode() for e in events]
    payloads.insert(4, b'{"message_id": "no-schema"}')
    payloads.insert(7, raw(stray, 1).model_dump_json().encode())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for envelope in pack(payloads, EnvelopeLimits(max_events=4)):
        producer.produce(topics.raw.name, envelope.value, None, partition=1, headers=envelope.headers)
    # an envelope on `sessioned` too: its events are stamped with their person one by one
    stamped = [
        EnrichedEvent(**raw(d, 90).model_dump(), session_id=f"s-{d}", session_seq=1).model_dump_json().encode()
        for d in devices_on(0, partitions, 2, f"sessioned-{run}")
    ]
    [envelope] = pack(stamped)
    producer.produce(topics.sessioned.name, envelope.value, None, partition=0, headers=envelope.headers)
    assert producer.flush(10) == 0

    with processor(settings, tmp_path / "logs") as worker, projector(settings) as live:

        def count(sql: str) -> int:
            return clickhouse_client.query(sql).result_rows[0][0]

        expected = len(events) + len(stamped)
        wait_until(
            lambda: count(f"SELECT count() FROM {db}.events FINAL") == expected,
            90,
            what=f"{expected} events in ClickHouse",
            watch=(worker, live),
        )
        wait_until(
            lambda: count(f"SELECT count() FROM {db}.sessions FINAL WHERE device_key IN {tuple(here)}") == 6,
            60,
            what="two sessions for each of the three devices",
            watch=(worker, live),
        )
        rows = wait_until(
            lambda: len(processor_rows := [m.value for m in bad_rows(settings) if m.value["stage"] == "processor"]) >= 2 and processor_rows,
            30,
            what="two bad rows",
            watch=(worker,),
        )

    assert count(f"SELECT count() FROM {db}.events FINAL WHERE anonymous_id = '{stray}'") == 0
    by_field = {row["problems"][0]["field"]: row for row in rows}
    assert set(by_field) == {"RawEvent", "envelope_partition"}
    assert by_field["RawEvent"]["payload"] == '{"message_id": "no-schema"}'
    assert stray in by_field["envelope_partition"]["payload"]
    assert "partition 2" in by_field["envelope_partition"]["problems"][0]["reason"]
    [person_of_user] = clickhouse_client.query(
        f"SELECT count() FROM {db}.events FINAL WHERE user_id = '{user}' AND person_id != ''"
    ).result_rows[0]
    assert person_of_user == 1
