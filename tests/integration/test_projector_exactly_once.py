"""Exactly once in effect: a projector that dies between ClickHouse's insert and Kafka's offset commit
replays the batch, and no count in ClickHouse changes."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from projections.clickhouse import connect
from projections.projector import Projector
from projections.replay import end_offsets
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


class CrashBeforeCommit(Projector):
    """The real projector, stopped dead after its first insert: the process 'dies' before the commit."""

    def commit(self, batch) -> None:
        raise SystemExit("killed between insert and commit")


def events(count: int, first: int = 0) -> list[EnrichedEvent]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        EnrichedEvent(
            message_id=f"m-{n}",
            type="track",
            event="Clicked",
            anonymous_id=f"device-{n % 7}",
            timestamp=start + timedelta(seconds=n),
            received_at=start,
            source_id="test",
            session_id=f"s-{n % 7}",
            person_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"device-{n % 7}")),
        )
        for n in range(first, first + count)
    ]


def run_until_done(projector: Projector, settings) -> None:
    finish = end_offsets(settings, [settings.topics.enriched.name, settings.topics.identities.name])
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    wait_until(
        lambda: all(projector.committed.get(p, 0) >= end for p, end in finish.items()) or not thread.is_alive(),
        60,
        what="the projector to finish",
    )
    projector.stop()
    thread.join(30)


def test_a_crash_between_insert_and_commit_counts_nothing_twice(settings, clickhouse_client):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    sent = events(300)
    for event in sent:
        producer.produce(settings.topics.enriched.name, event.model_dump_json().encode(), event.distinct_id.encode())
    for n in range(7):
        mapping = DistinctIdMapping(distinct_id=f"device-{n}", person_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"device-{n}")), version=n + 1)
        producer.produce(settings.topics.identities.name, mapping.model_dump_json().encode(), mapping.distinct_id.encode())
    assert producer.flush(10) == 0
    db = settings.database

    crashing = CrashBeforeCommit(
        settings.model_copy(update={"batch_max_rows": 100_000, "batch_max_seconds": 2.0}), connect(settings.clickhouse_dsn)
    )
    died: list[SystemExit] = []

    def run_and_die() -> None:
        try:
            crashing.run()
        except SystemExit as exc:
            died.append(exc)

    thread = threading.Thread(target=run_and_die, daemon=True)
    thread.start()
    thread.join(60)
    inserted = clickhouse_client.query(f"SELECT count() FROM {db}.events").result_rows[0][0]
    assert died and inserted > 0 and crashing.committed == {}  # rows are in ClickHouse, the offsets are not in Kafka

    run_until_done(Projector(settings, connect(settings.clickhouse_dsn)), settings)  # the restart replays it all

    assert clickhouse_client.query(f"SELECT count() FROM {db}.events FINAL").result_rows[0][0] == len(sent)
    daily = clickhouse_client.query(f"SELECT sum(count) FROM {db}.event_counts_daily").result_rows[0][0]
    profiles = clickhouse_client.query(f"SELECT count(), sum(event_count) FROM {db}.persons FINAL").result_rows[0]
    assert daily == len(sent)
    assert profiles == (7, len(sent))


def test_the_projector_waits_while_clickhouse_refuses_and_loses_nothing(settings, clickhouse_client):
    """ClickHouse refusing inserts (here: the events table is renamed away) pauses the projector; nothing is
    committed, nothing dropped, and it carries on by itself once ClickHouse accepts again."""
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    sent = events(300)
    for event in sent:
        producer.produce(settings.topics.enriched.name, event.model_dump_json().encode(), event.distinct_id.encode())
    assert producer.flush(10) == 0
    db = settings.database
    clickhouse_client.command(f"RENAME TABLE {db}.events TO {db}.events_away")

    projector = Projector(settings, connect(settings.clickhouse_dsn))
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: projector.refusals >= 2, 30, what="ClickHouse to refuse the batch twice")
        assert thread.is_alive() and projector.committed == {}  # retrying, nothing committed, nothing dropped
        clickhouse_client.command(f"RENAME TABLE {db}.events_away TO {db}.events")  # ClickHouse accepts again
        finish = end_offsets(settings, [settings.topics.enriched.name])
        wait_until(lambda: all(projector.committed.get(p, 0) >= end for p, end in finish.items()), 60, what="the backlog to drain")
    finally:
        projector.stop()
        thread.join(30)
    assert clickhouse_client.query(f"SELECT count() FROM {db}.events FINAL").result_rows[0][0] == len(sent)


def test_a_slow_clickhouse_paces_the_projector_and_loses_nothing(settings, clickhouse_client):
    """Every insert into `events` made slow (a materialized view that sleeps 4 ms a row): the projector keeps
    committing, wave after wave, only what ClickHouse took, without a refusal or a retry, and drains what is
    left once ClickHouse is fast again; every event is counted once."""
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    db, topic = settings.database, settings.topics.enriched.name
    clickhouse_client.command(
        f"CREATE MATERIALIZED VIEW {db}.slow_inserts ENGINE = Null AS SELECT sleepEachRow(0.004) AS slept FROM {db}.events"
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    projector = Projector(settings, connect(settings.clickhouse_dsn))
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    commits_while_slow: list[int] = []
    slow_started = time.monotonic()
    try:
        for wave in range(4):
            for event in events(250, first=wave * 250):
                producer.produce(topic, event.model_dump_json().encode(), event.distinct_id.encode())
            assert producer.flush(10) == 0
            wait_until(
                lambda: sum(projector.committed.values()) > (commits_while_slow or [0])[-1],
                60,
                what="the slowed projector to commit again",
                watch=(projector,),
            )
            commits_while_slow.append(sum(projector.committed.values()))
        slow_seconds = time.monotonic() - slow_started
        behind = sum(end_offsets(settings, [topic]).values()) - commits_while_slow[-1]
        clickhouse_client.command(f"DROP VIEW {db}.slow_inserts")  # fast again
        finish = end_offsets(settings, [topic])
        wait_until(lambda: all(projector.committed.get(p, 0) >= end for p, end in finish.items()), 60, what="the backlog to drain")
        assert thread.is_alive() and projector.refusals == 0  # slow is not refused: nothing was retried or dropped
    finally:
        projector.stop()
        thread.join(30)
    print(f"committed while slow: {commits_while_slow} in {slow_seconds:.1f} s; behind when ClickHouse became fast again: {behind}")
    assert slow_seconds >= 4 * 250 * 0.004  # ClickHouse really was slow: at least 1 s an insert of a wave
    assert commits_while_slow == sorted(set(commits_while_slow))  # progress at every wave, never a step back
    assert clickhouse_client.query(f"SELECT count(), uniqExact(message_id) FROM {db}.events FINAL").result_rows[0] == (1000, 1000)
