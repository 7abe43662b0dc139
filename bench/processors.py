"""Stream-processor throughput against a bare consume-and-produce loop on the same transport (aiokafka).

    make bench-processors        (or: .venv/bin/python bench/processors.py [--events 30000])

One run, one broker, the same pre-produced raw events for every scenario:
  bare loop       aiokafka consumer → aiokafka producer, one message out per message in (the ceiling)
  faust floor     a faust worker whose agent takes the same batches and does nothing (bench/faust_floor.py):
                  faust's own per-message cost, which every faust agent pays before any work of its own
  sessionizer     a `footfall processor` worker: events/s until it has committed every raw event (a batch is
                  committed only after its enriched events, session updates and state went out)
  + identity      the same worker: events/s until `enriched` holds every event, stamped with its person
                  (identity commands through the sequencer, the `person-of` table, re-keying where needed)
Also reports bytes of sessionizer state per active device key. Writes bench/results/processors.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import REPO, broker, write_result
from processors.sessionizer import SessionizerConfig, assign
from schemas.config import FootfallSettings
from schemas.events import RawEvent

PARTITIONS = 4


def raw_events(count: int, devices: int, seed: int = 1) -> list[RawEvent]:
    """Page views and custom events of many devices, with gaps under and over 30 minutes."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    clock = {d: start + timedelta(seconds=rng.uniform(0, 600)) for d in range(devices)}
    weights = [1 / (rank + 1) for rank in range(devices)]  # Zipf: a few hot devices, a long tail
    picks = rng.choices(range(devices), weights=weights, k=count)
    events = []
    for n, d in enumerate(picks):
        clock[d] += timedelta(seconds=rng.choice([5, 30, 120, 600, 2400]))
        events.append(RawEvent(
            message_id=str(uuid.UUID(int=rng.getrandbits(128))), type="page" if n % 3 else "track", event="Clicked",
            anonymous_id=f"device-{d}", timestamp=min(clock[d], datetime.now(UTC)), received_at=datetime.now(UTC),
            properties={"url": f"https://shop.example/p/{n % 50}?utm_source=bench"}, source_id="bench",
            user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        ))
    return events


def produce(bootstrap: str, topic: str, events: list[RawEvent]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random"})
    for event in events:
        producer.produce(topic, event.model_dump_json().encode(), event.device_key.encode())
        producer.poll(0)
    assert producer.flush(60) == 0


def messages_in(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions)
    finally:
        consumer.close()


async def bare_loop(bootstrap: str, source: str, sink: str, expected: int) -> float:
    """The ceiling: consume every message and produce it again, nothing else. Returns events/s."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        seen, started = 0, None
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    started = started or time.perf_counter()
                    await producer.send(sink, record.value, key=record.key)
                    seen += 1
            await consumer.commit()
        await producer.flush()
        return expected / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def wait_for(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if messages_in(bootstrap, topic) >= count:
                return time.perf_counter()
        except KafkaException:
            pass  # the topic is still being created or has no leader yet
        time.sleep(0.2)
    raise TimeoutError(f"{topic} did not reach {count} messages in {timeout_s}s")


def wait_for_commits(bootstrap: str, group: str, topic: str, count: int, timeout_s: float) -> float:
    """When `group` has committed `count` messages of `topic`: the sessionizer commits a batch only after
    its sends and state writes, so this is when every event has been sessionized."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = consumer.committed(partitions, timeout=10)
            if sum(max(tp.offset, 0) for tp in committed) >= count:
                return time.perf_counter()
            time.sleep(0.1)
    finally:
        consumer.close()
    raise TimeoutError(f"{group} did not commit {count} messages of {topic} in {timeout_s}s")


def faust_floor_rate(bootstrap: str, topic: str, events: list[RawEvent], data_dir: str) -> float:
    """Events/s of a faust agent that does nothing: from the first produce until it has taken every event."""
    group = f"bench-floor-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FAUST_FLOOR_GROUP": group, "FAUST_FLOOR_DATA_DIR": f"{data_dir}/floor"}
    done_file = Path(data_dir) / "floor-done"
    worker = subprocess.Popen([sys.executable, "-m", "bench.faust_floor", topic, str(len(events) + 1), str(done_file)],
                              env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        produce(bootstrap, topic, raw_events(1, 1, seed=99))
        wait_for_commits(bootstrap, group, topic, 1, 120)  # joined and consuming
        started = time.monotonic()
        produce(bootstrap, topic, events)
        deadline = started + 600
        while not done_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(events) / (float(done_file.read_text()) - started)
    finally:
        worker.terminate()
        worker.wait(30)


def state_bytes_per_key(events: list[RawEvent]) -> float:
    states = {}
    for event in events:
        states[event.device_key] = assign(states.get(event.device_key), event, event.timestamp, SessionizerConfig()).state
    return sum(len(s.to_json()) for s in states.values()) / len(states)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=2_000)
    args = parser.parse_args()
    events = raw_events(args.events, args.devices)

    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="footfall-bench-") as data_dir:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(f"{prefix}.bare-in", PARTITIONS, 1), NewTopic(f"{prefix}.bare-out", PARTITIONS, 1)]).values():
            future.result()

        produce(bootstrap, f"{prefix}.bare-in", events)
        bare = asyncio.run(bare_loop(bootstrap, f"{prefix}.bare-in", f"{prefix}.bare-out", len(events)))
        print(f"bare consume-and-produce loop: {bare:,.0f} events/s")

        floor = faust_floor_rate(bootstrap, f"{prefix}.floor-in", events, data_dir)
        print(f"faust agent doing nothing: {floor:,.0f} events/s")

        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FOOTFALL_TOPIC_PREFIX": prefix, "FOOTFALL_PARTITIONS": str(PARTITIONS),
               "FOOTFALL_DATA_DIR": data_dir, "FOOTFALL_PROCESSOR_METRICS_PORT": "0"}
        worker = subprocess.Popen([sys.executable, "-m", "footfall", "processor"], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            warmup = raw_events(1, 1, seed=99)
            produce(bootstrap, settings.topics.raw.name, warmup)
            wait_for(bootstrap, settings.topics.enriched.name, 1, 120)  # worker joined, tables recovered
            started = time.perf_counter()
            produce(bootstrap, settings.topics.raw.name, events)
            sessioned_done = wait_for_commits(bootstrap, f"{prefix}-processor", settings.topics.raw.name, len(events) + 1, 600)
            enriched_done = wait_for(bootstrap, settings.topics.enriched.name, len(events) + 1, 600)
        finally:
            worker.terminate()
            worker.wait(30)

    sessionizer = len(events) / (sessioned_done - started)
    with_identity = len(events) / (enriched_done - started)
    result = {
        "command": "make bench-processors",
        "events": len(events), "devices": args.devices, "partitions": PARTITIONS, "workers": 1,
        "bare_loop_events_per_s": round(bare),
        "faust_floor_events_per_s": round(floor),
        "faust_floor_ratio_to_bare": round(floor / bare, 3),
        "sessionizer_events_per_s": round(sessionizer),
        "sessionizer_and_identity_events_per_s": round(with_identity),
        "sessionizer_ratio_to_bare": round(sessionizer / bare, 3),
        "with_identity_ratio_to_bare": round(with_identity / bare, 3),
        "state_bytes_per_active_key": round(state_bytes_per_key(events)),
    }
    print(result)
    print(f"wrote {write_result('processors', result)}")


if __name__ == "__main__":
    main()
