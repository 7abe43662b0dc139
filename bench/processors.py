"""Stream-processor throughput against a bare consume-and-produce loop on the same transport (aiokafka).

    make bench-processors        (or: .venv/bin/python -m bench.processors [--events 60000] [--per-envelope 100])

One run, one broker, the same pre-produced raw records for every scenario: envelopes of --per-envelope events
per raw partition, as the collector writes them (schemas/envelope.py; 0: one event per record, as before):
  bare loop       aiokafka consumer → aiokafka producer, each record out as it came in (the ceiling)
  faust floor     a faust worker whose agent takes the same batches and does nothing (bench/faust_floor.py):
                  faust's own per-record cost, which every faust agent pays before any work of its own
  sessionizer     a `footfall processor` worker: events/s until it has committed every raw record (a batch is
                  committed only after its enriched events, session updates and state went out)
  + identity      the same worker: events/s until `enriched` holds every event, stamped with its person
                  (identity commands through the sequencer, the `person-of` table, re-keying where needed)
  per-event work  the sessionize step in-process on the same records (CPU µs per event: reading the records,
                  sessionizing, identity commands, serialising and enveloping every output), beside what
                  validating each event with pydantic alone costs (the collector did; the processors no longer do)
Also reports bytes of sessionizer state per active device key. Writes bench/results/processors.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import REPO, broker, write_result
from processors import steps
from processors.events import read_event
from processors.records import EventSlices, read_record
from processors.sessionizer import SessionizerConfig, assign
from schemas.config import FootfallSettings, tune_garbage_collector
from schemas.envelope import COUNT_HEADER, EnvelopeLimits, header, pack_by_partition
from schemas.events import RawEvent

PARTITIONS = 4
Record = tuple[int | None, bytes | None, bytes, list | None]  # partition (None: by key), key, value, headers


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
        events.append(
            RawEvent(
                message_id=str(uuid.UUID(int=rng.getrandbits(128))),
                type="page" if n % 3 else "track",
                event="Clicked",
                anonymous_id=f"device-{d}",
                timestamp=min(clock[d], datetime.now(UTC)),
                received_at=datetime.now(UTC),
                properties={"url": f"https://shop.example/p/{n % 50}?utm_source=bench"},
                source_id="bench",
                user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            )
        )
    return events


def records_of(events: list[RawEvent], per_envelope: int) -> list[Record]:
    """Envelopes of `per_envelope` events per raw partition, in order, as the collector writes them; or (0) one
    keyed event per record, as before envelopes."""
    keyed = [(event.device_key.encode(), event.model_dump_json().encode()) for event in events]
    if per_envelope == 0:
        return [(None, key, value, None) for key, value in keyed]
    return [
        (partition, None, envelope.value, envelope.headers)
        for partition, envelope in pack_by_partition(keyed, PARTITIONS, EnvelopeLimits(max_events=per_envelope))
    ]


def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random"})
    for partition, key, value, headers in records:
        if partition is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, partition=partition, headers=headers)
        producer.poll(0)
    assert producer.flush(60) == 0


def events_in_record(headers) -> int:
    count = header(headers, COUNT_HEADER)
    return int(count) if count is not None else 1


class EventCounter:
    """Counts the events (not records) on a topic from its beginning, reading on from where it left off."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4()}", "enable.auto.commit": False})
        self.topic, self.events, self.assigned = topic, 0, False

    def wait_for(self, count: int, timeout_s: float) -> float:
        """perf_counter() once the topic holds `count` events."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.assigned:
                try:
                    partitions = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
                except (KafkaException, KeyError):
                    partitions = {}
                if not partitions:
                    time.sleep(0.2)
                    continue
                self.consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
                self.assigned = True
            for message in self.consumer.consume(num_messages=1000, timeout=0.1):
                if message.error() is None:
                    self.events += events_in_record(message.headers())
            if self.events >= count:
                return time.perf_counter()
        raise TimeoutError(f"{self.topic} did not reach {count} events in {timeout_s}s (saw {self.events})")

    def close(self) -> None:
        self.consumer.close()


async def bare_loop(bootstrap: str, source: str, sink: str, expected: int) -> tuple[float, float]:
    """The ceiling: consume every record and produce it again as it came (an envelope stays one record), nothing
    else. Returns events/s, and events per CPU second of this process (what one dedicated core would give)."""
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4()}", auto_offset_reset="earliest", enable_auto_commit=False
    )
    # The worker's producer settings (processors/app.py): an envelope is larger than aiokafka's default 16 KB batch,
    # which would send every record in a request of its own.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        seen, started, cpu_started = 0, None, None
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    if started is None:
                        started, cpu_started = time.perf_counter(), time.process_time()
                    await producer.send(sink, record.value, key=record.key, partition=record.partition, headers=list(record.headers))
                    seen += events_in_record(record.headers)
            await consumer.commit()
        await producer.flush()
        return expected / (time.perf_counter() - started), expected / (time.process_time() - cpu_started)
    finally:
        await consumer.stop()
        await producer.stop()


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


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def faust_floor_rate(bootstrap: str, topic: str, records: list[Record], events: int, data_dir: str) -> tuple[float, float]:
    """Events/s of a faust agent that does nothing, from the first produce until it has taken every event; and
    events per CPU second of its process over the same span."""
    group = f"bench-floor-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FAUST_FLOOR_GROUP": group, "FAUST_FLOOR_DATA_DIR": f"{data_dir}/floor"}
    done_file = Path(data_dir) / "floor-done"
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_floor", topic, str(events + 1), str(done_file)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        produce(bootstrap, topic, records_of(raw_events(1, 1, seed=99), 0))
        wait_for_commits(bootstrap, group, topic, 1, 120)  # joined and consuming
        cpu_started, started = cpu_seconds(psutil.Process(worker.pid)), time.monotonic()
        produce(bootstrap, topic, records)
        deadline = started + 600
        while not done_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu = cpu_seconds(psutil.Process(worker.pid)) - cpu_started
        return events / (float(done_file.read_text()) - started), events / cpu
    finally:
        worker.terminate()
        worker.wait(30)


def state_bytes_per_key(events: list[RawEvent]) -> float:
    states = {}
    for event in events:
        states[event.device_key] = assign(states.get(event.device_key), event, event.timestamp, SessionizerConfig()).state
    return sum(len(s.to_json()) for s in states.values()) / len(states)


@contextlib.contextmanager
def garbage_collector_as_in_a_worker():
    """The cyclic collector tuned as `footfall processor` tunes it (schemas.config.tune_garbage_collector), then
    put back: with CPython's default the collections cost the step about a third more than in a worker."""
    thresholds = gc.get_threshold()
    tune_garbage_collector(FootfallSettings())
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def per_event_work_us(records: list[Record], events: list[RawEvent], records_per_batch: int, slice_events: int) -> dict:
    """CPU µs per event of the sessionize step on the same records, in-process (no Kafka, no faust), in the
    batches and slices a worker cuts and with its garbage collector settings; and, as the baseline in the same
    run, what validating each event with pydantic alone costs."""
    with garbage_collector_as_in_a_worker():
        return _per_event_work_us(records, events, records_per_batch, slice_events)


def _per_event_work_us(records: list[Record], events: list[RawEvent], records_per_batch: int, slice_events: int) -> dict:
    table: dict[bytes, bytes] = {}
    decoded = steps.DecodedStates(table)
    pending: steps.PendingStates[None] = steps.PendingStates(decoded)
    watermarks: dict[int, datetime] = {}

    def watermark(partition: int, at: datetime) -> datetime:
        watermarks[partition] = max(at, watermarks.get(partition, at))
        return watermarks[partition]

    config, payloads = SessionizerConfig(), [event.model_dump_json().encode() for event in events]
    assign(None, read_event(payloads[0]), events[0].timestamp, config)  # warm: the user-agent parser loads once
    started = time.process_time()
    for at in range(0, len(records), records_per_batch):
        slices, full = EventSlices(slice_events), []
        for partition, key, value, headers in records[at : at + records_per_batch]:
            partition = partition or 0
            full += slices.add(
                None, partition, read_record(key, value, headers, partition, PARTITIONS, read_event, steps.device_key, "RawEvent").events
            )
        for handed in [*full, slices.rest()]:  # as processors/app.py's sessionize agent does
            out = steps.sessionize(handed, pending.state_of, {}.get, watermark, config)
            pending.hold(out.states)
            for outputs in (out.enriched, out.sessioned, out.sessions, out.identity_commands):
                list(pack_by_partition(outputs, PARTITIONS))
        for key, (state, _) in pending.take().items():
            table[key] = stored = state.to_json()
            decoded.wrote(key, stored, state)
    sessionize_us = (time.process_time() - started) / len(events) * 1e6
    started = time.process_time()
    for payload in payloads:
        RawEvent.model_validate_json(payload)
    validate_us = (time.process_time() - started) / len(events) * 1e6
    return {"sessionize_step_us_per_event": round(sessionize_us, 1), "pydantic_validation_us_per_event": round(validate_us, 1)}


PROFILED_STEPS = {
    "assign": "assign",
    "read_record": "reading records (orjson, checks)",
    "stamped": "stamping enriched events",
    "session_update_json": "session JSON",
    "commands_for": "identity commands",
    "pack_by_partition": "enveloping",
    "to_json": "state JSON",
}


def where_the_time_goes(records: list[Record], events: list[RawEvent], records_per_batch: int, slice_events: int) -> str:
    """The sessionize step under cProfile: the share of its time in each named part (profiling inflates Python
    code more than C, so shares, not µs)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(per_event_work_us, records, events, records_per_batch, slice_events)
    stats = pstats.Stats(profile).stats

    def cumulative(fn):
        return sum(ct for (path, _, name), (_, _, _, ct, _) in stats.items() if name == fn and "site-packages" not in path)

    total = cumulative("per_event_work_us") - cumulative("model_validate_json")  # the step, not the baseline
    return ", ".join(f"{label} {cumulative(fn) / total:.0%}" for fn, label in PROFILED_STEPS.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--per-envelope", type=int, default=100, help="events per raw record (0: one event per record)")
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 1)
    events = raw_events(args.events, args.devices)
    records = records_of(events, args.per_envelope)
    settings = FootfallSettings()
    cuts = settings.processor_batch_max, settings.processor_slice_events  # as a worker takes and slices them
    work = per_event_work_us(records, events, *cuts)
    work["where_the_time_goes"] = where_the_time_goes(records, events, *cuts)
    print(
        f"per-event work of the sessionize step: {work['sessionize_step_us_per_event']} µs CPU "
        f"(pydantic validation alone: {work['pydantic_validation_us_per_event']} µs); {work['where_the_time_goes']}"
    )

    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="footfall-bench-") as data_dir:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics(
            [NewTopic(f"{prefix}.bare-in", PARTITIONS, 1), NewTopic(f"{prefix}.bare-out", PARTITIONS, 1)]
        ).values():
            future.result()

        produce(bootstrap, f"{prefix}.bare-in", records)
        bare, bare_per_cpu = asyncio.run(bare_loop(bootstrap, f"{prefix}.bare-in", f"{prefix}.bare-out", len(events)))
        print(f"bare consume-and-produce loop: {bare:,.0f} events/s ({bare_per_cpu:,.0f} per CPU second)")

        floor, floor_per_cpu = faust_floor_rate(bootstrap, f"{prefix}.floor-in", records, len(events), data_dir)
        print(f"faust agent doing nothing: {floor:,.0f} events/s ({floor_per_cpu:,.0f} per CPU second)")

        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FOOTFALL_TOPIC_PREFIX": prefix,
            "FOOTFALL_PARTITIONS": str(PARTITIONS),
            "FOOTFALL_DATA_DIR": data_dir,
            "FOOTFALL_PROCESSOR_METRICS_PORT": "0",
        }
        worker_log = Path(data_dir) / "worker.log"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "footfall", "processor"], env=env, cwd=REPO, stdout=log, stderr=log)
        enriched = EventCounter(bootstrap, settings.topics.enriched.name)
        try:
            produce(bootstrap, settings.topics.raw.name, records_of(raw_events(1, 1, seed=99), 0))
            enriched.wait_for(1, 600)  # worker joined, tables recovered (slow on a loaded machine)
            process = psutil.Process(worker.pid)
            cpu_started, started = cpu_seconds(process), time.perf_counter()
            produce(bootstrap, settings.topics.raw.name, records)
            sessioned_done = wait_for_commits(bootstrap, f"{prefix}-processor", settings.topics.raw.name, len(records) + 1, 600)
            sessioned_cpu = cpu_seconds(process) - cpu_started
            enriched_done = enriched.wait_for(len(events) + 1, 600)
            enriched_cpu = cpu_seconds(process) - cpu_started
        except BaseException:
            print(
                f"the worker (exit status {worker.poll()}) logged last:",
                *worker_log.read_text(errors="replace").splitlines()[-40:],
                sep="\n",
                file=sys.stderr,
            )
            raise
        finally:
            enriched.close()
            worker.terminate()
            worker.wait(30)

    sessionizer = len(events) / (sessioned_done - started)
    with_identity = len(events) / (enriched_done - started)
    result = {
        "command": "make bench-processors",
        "events": len(events),
        "devices": args.devices,
        "partitions": PARTITIONS,
        "workers": 1,
        "events_per_record": args.per_envelope or 1,
        "records": len(records),
        "batch_max_records": cuts[0],
        "slice_events": cuts[1],
        "bare_loop_events_per_s": round(bare),
        "faust_floor_events_per_s": round(floor),
        "faust_floor_ratio_to_bare": round(floor / bare, 3),
        "sessionizer_events_per_s": round(sessionizer),
        "sessionizer_and_identity_events_per_s": round(with_identity),
        "sessionizer_ratio_to_bare": round(sessionizer / bare, 3),
        "with_identity_ratio_to_bare": round(with_identity / bare, 3),
        # Per CPU second of the process (user + system): what one dedicated core gives, whatever else the shared
        # machine runs; the broker's CPU is not counted in any row.
        "per_cpu_second": {
            "bare_loop": round(bare_per_cpu),
            "faust_floor": round(floor_per_cpu),
            "sessionizer": round(len(events) / sessioned_cpu),
            "sessionizer_and_identity": round(len(events) / enriched_cpu),
        },
        **work,
        "state_bytes_per_active_key": round(state_bytes_per_key(events)),
        "load_average_at_start": load_at_start,  # the machine is shared: how busy it was
        "load_average_at_end": round(os.getloadavg()[0], 1),
    }
    print(result)
    print(f"wrote {write_result('processors', result)}")


if __name__ == "__main__":
    main()
