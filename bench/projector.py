"""Projector throughput against a plain clickhouse-connect bulk insert, and end-to-end freshness.

    make bench-projector        (or: .venv/bin/python -m bench.projector [--rows 100000])

In one run, one broker, one embedded ClickHouse:
  bulk insert   the same rows inserted with clickhouse-connect in 10,000-row column-typed batches (the ceiling)
  floor         the least any projector does with those events pre-produced to `enriched`: consume, decode
                with orjson (no schema check), build the same rows, insert 10,000 at a time, commit; no
                profiles, sessions or mappings
  projector     the same events pre-produced to `enriched`: rows/s until every offset is committed
  freshness     the whole pipeline (collector, one processor, projector) at a steady offered rate:
                time from the collector's 200 to the row being queryable, p50/p95/p99
Floor and projector are timed from the first message consumed (joining the consumer group is not throughput).
Writes bench/results/projector.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime

import httpx
import orjson
from confluent_kafka import Consumer, Producer

from bench.common import REPO, broker, free_port, write_result
from bench.processors import raw_events
from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from projections.projector import Projector
from projections.replay import end_offsets
from projections.rows import EVENTS, epoch_ms, event_row
from schemas.config import FootfallSettings, tune_garbage_collector
from schemas.events import EnrichedEvent

WRITE_KEY = "bench-write-key"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def enriched(count: int) -> list[EnrichedEvent]:
    """Events of count/20 devices (Zipf-skewed), each device one person, as the processors emit them."""
    return [
        EnrichedEvent(
            **e.model_dump(),
            session_id=str(uuid.uuid5(uuid.NAMESPACE_URL, e.device_key)),
            session_seq=1,
            person_id=str(uuid.uuid5(uuid.NAMESPACE_OID, e.device_key)),
        )
        for e in raw_events(count, max(count // 20, 10), seed=3)
    ]


def bulk_insert(client, database: str, events: list[EnrichedEvent]) -> float:
    rows = [event_row(e, 0, n) for n, e in enumerate(events)]
    started = time.perf_counter()
    for start in range(0, len(rows), 10_000):
        client.insert(
            f"{database}.events", rows[start : start + 10_000], column_names=EVENTS.column_names, column_type_names=EVENTS.column_types
        )
    return len(rows) / (time.perf_counter() - started)


def produce_enriched(settings: FootfallSettings, events: list[EnrichedEvent]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 20, "compression.type": "lz4"})
    for event in events:
        producer.produce(settings.topics.enriched.name, event.model_dump_json().encode(), event.distinct_id.encode())
        producer.poll(0)
    assert producer.flush(60) == 0


def floor_row(event: dict, partition: int, offset: int) -> list:
    """event_row's columns straight from the decoded JSON, without the schema."""
    return [
        event["message_id"],
        epoch_ms(datetime.fromisoformat(event["timestamp"])),
        epoch_ms(datetime.fromisoformat(event["received_at"])),
        event["type"],
        event.get("event") or "",
        event.get("user_id") or event.get("anonymous_id") or "",
        event.get("anonymous_id") or "",
        event.get("user_id") or "",
        event.get("person_id") or "",
        event.get("session_id") or "",
        orjson.dumps(event.get("properties")).decode(),
        orjson.dumps(event.get("traits")).decode(),
        orjson.dumps(event.get("context")).decode(),
        event["source_id"],
        event.get("ip") or "",
        event.get("user_agent") or "",
        event.get("flags") or [],
        partition,
        offset,
    ]


def floor_rate(settings: FootfallSettings, client, events: list[EnrichedEvent]) -> float:
    """Consume, decode, insert, commit: what is left of a projector with no profiles and no schema check."""
    produce_enriched(settings, events)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.topic_prefix}-floor",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topics.enriched.name])
    done, batch, started = 0, [], None
    while done < len(events):
        for message in consumer.consume(5_000, timeout=0.2):
            started = started or time.perf_counter()  # from the first message: the group join is not throughput
            if not message.error():
                batch.append(floor_row(orjson.loads(message.value()), message.partition(), message.offset()))
        if len(batch) >= 10_000 or (batch and done + len(batch) == len(events)):
            client.insert(f"{settings.database}.events", batch, column_names=EVENTS.column_names, column_type_names=EVENTS.column_types)
            consumer.commit(asynchronous=False)
            done, batch = done + len(batch), []
    elapsed = time.perf_counter() - started
    consumer.close()
    return len(events) / elapsed


def projector_rate(settings: FootfallSettings, client, events: list[EnrichedEvent]) -> float:
    produce_enriched(settings, events)
    worker = Projector(settings, client)
    finish = end_offsets(settings, [settings.topics.enriched.name])
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while not worker.batch.size and not worker.committed:
        time.sleep(0.001)
    started = time.perf_counter()  # from the first message consumed, as for the floor
    while any(worker.committed.get(p, 0) < end for p, end in finish.items()):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    worker.stop()
    thread.join(30)
    return len(events) / elapsed


def freshness(settings: FootfallSettings, client, rate: float, seconds: float) -> dict:
    """Offer `rate` single-event requests per second; measure collector 200 → queryable in ClickHouse."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
        "FOOTFALL_PARTITIONS": str(settings.partitions),
        "FOOTFALL_DATA_DIR": str(settings.data_dir),
        "FOOTFALL_COLLECTOR_PORT": str(settings.collector_port),
        "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=bench",
        "FOOTFALL_PROCESSOR_METRICS_PORT": "0",
        "PATH": "/usr/bin:/bin",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "footfall", stage], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for stage in ("processor", "collector")
    ]
    worker = Projector(settings, client)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.collector_port}"
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    try:
        with httpx.Client(auth=(WRITE_KEY, ""), timeout=10) as http:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if http.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            warmup = http.post(f"{url}/v1/track", json={"anonymousId": "warmup", "event": "Warmup"})
            assert warmup.status_code == 200, warmup.text
            while not client.query(f"SELECT count() FROM {settings.database}.events").result_rows[0][0]:
                time.sleep(0.2)  # processor joined and the first event made it through

            def poll_clickhouse(stop: threading.Event) -> None:
                while not stop.is_set() or len(seen) < len(acked):
                    found = client.query(f"SELECT message_id FROM {settings.database}.events WHERE source_id = 'bench'").result_rows
                    now = time.monotonic()
                    for (message_id,) in found:
                        seen.setdefault(message_id, now)
                    if stop.is_set() and now - stop_at[0] > 30:
                        return
                    time.sleep(0.05)

            stop, stop_at = threading.Event(), [0.0]
            poller = threading.Thread(target=poll_clickhouse, args=(stop,), daemon=True)
            poller.start()
            started = time.monotonic()
            for n in range(int(rate * seconds)):
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
                message_id = f"fresh-{n}"
                response = http.post(
                    f"{url}/v1/track", json={"anonymousId": f"visitor-{n % 500}", "event": "Viewed", "messageId": message_id}
                )
                if response.status_code == 200:
                    acked[message_id] = time.monotonic()
            offered = len(acked) / (time.monotonic() - started)
            stop_at[0] = time.monotonic()
            stop.set()
            poller.join(60)
    finally:
        worker.stop()
        thread.join(30)
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    delays = [seen[m] - acked[m] for m in acked if m in seen]
    return {
        "offered_events_per_s": round(offered, 1),
        "acknowledged": len(acked),
        "queryable": len(delays),
        "freshness_p50_s": round(percentile(delays, 50), 3),
        "freshness_p95_s": round(percentile(delays, 95), 3),
        "freshness_p99_s": round(percentile(delays, 99), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100.0, help="offered events/s for the freshness run")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    events = enriched(args.rows)
    tune_garbage_collector(FootfallSettings())  # as `footfall projector` does
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="footfall-bench-") as data_dir:
        client = connect(f"chdb://{data_dir}/clickhouse")
        base = FootfallSettings(kafka_bootstrap_servers=bootstrap, data_dir=data_dir, partitions=4, collector_port=free_port())

        def fresh(name: str) -> FootfallSettings:
            settings = base.model_copy(update={"topic_prefix": f"bench-{name}-{uuid.uuid4().hex[:6]}", "database": f"bench_{name}"})
            migrate(client, settings.database)
            ensure_topics(bootstrap, settings.topics.all())
            return settings

        bulk = bulk_insert(client, fresh("bulk").database, events)
        print(f"bulk insert: {bulk:,.0f} rows/s")
        floor = floor_rate(fresh("floor"), client, events)
        print(f"floor (consume, decode, insert, commit): {floor:,.0f} rows/s")
        projected = projector_rate(fresh("projector"), client, events)
        print(f"projector: {projected:,.0f} rows/s")
        fresh_result = freshness(fresh("freshness"), client, args.rate, args.seconds)
        print(f"freshness: {fresh_result}")
    result = {
        "command": "make bench-projector",
        "rows": len(events),
        "bulk_insert_rows_per_s": round(bulk),
        "floor_rows_per_s": round(floor),
        "floor_ratio_to_bulk_insert": round(floor / bulk, 3),
        "projector_rows_per_s": round(projected),
        "projector_ratio_to_bulk_insert": round(projected / bulk, 3),
        "freshness": fresh_result,
    }
    print(f"wrote {write_result('projector', result)}")


if __name__ == "__main__":
    main()
