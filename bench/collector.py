"""Collector throughput against a null ASGI app, on the same server stack and load generator.

    make bench-collector          (or: .venv/bin/python -m bench.collector [--seconds 8] [--rounds 3])

One uvicorn worker (same flags for every app) pinned to CPU 0; wrk on CPU 1, together with this
script and the Kafka broker it starts (deploy/kafka.sh on spare ports, temporary state;
KAFKA_BOOTSTRAP_SERVERS points it at another broker instead). Four scenarios per round, interleaved
so that noise from the machine hits them alike, and the median of the rounds is reported:

  null-single  the null app, single-event bodies      collector-single  POST /v1/track
  null-batch   the null app, 100-event batch bodies   collector-batch   POST /v1/batch
  durable-single  the null app that also writes each body to Kafka with the collector's KafkaWriter and
               answers once Kafka has it (bench/collector_durable_app.py): the floor of "200 means durable"
  durable-batch   the same for batch bodies, split into calls (in envelopes, as the collector writes them): the floor of a batch
  xff-nogeo / xff-geo  the collector behind a trusted proxy (127.0.0.1): each single-event body comes with its
               own public X-Forwarded-For address (10,000 of them), GeoIP off / on for the source: the ratio
               is what locating the client costs (ingest/geo.py, cached per address)

Besides, in this process: GeoIP lookups per second, each address for the first time and from the cache.

The collector answers 200 only once Kafka (acks=all) has every event, so its numbers include that.
Ratios compare each collector scenario with the null app on the same bodies.

What the flush window (FOOTFALL_COLLECTOR_FLUSH_SECONDS) adds to the 200's latency: single-event requests with
the default window against the same collector with a window of 0 (only requests handled at the same moment
share an envelope), at full load (the 256 connections above) and at light load (8 connections, closed loop:
each waits for its answer before sending again), p50 and p99 from wrk. Writes bench/results/collector.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import REPO, broker, free_port, write_result
from footfall.topics import ensure_topics
from schemas.config import FootfallSettings

BENCH = REPO / "bench"
WRITE_KEY = "bench-write-key"
BATCH_SIZE = 100
SERVER_CPU, LOAD_CPU = "0", "1"
LIGHT_CONNECTIONS = 8
UVICORN_FLAGS = [
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
    "--no-access-log",
    "--no-proxy-headers",
    "--timeout-keep-alive",
    "30",
]


# -- load: realistic calls, each device key different (the per-device limit is on, as in production) -------


def browser_track(n: int, sent_at: datetime) -> dict:
    """A track call as analytics.js sends it (~0.9 KB)."""
    return {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": str(uuid.UUID(int=n)),
        "messageId": f"ajs-next-{n:016d}-{uuid.UUID(int=n).hex}",
        "properties": {"product_id": f"sku-{n % 997}", "category": "Games", "name": "Monopoly", "price": 18.99, "currency": "EUR"},
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
            "locale": "en-US",
            "page": {
                "path": "/products/monopoly",
                "referrer": "https://www.google.com/",
                "search": "",
                "title": "Monopoly – Shop",
                "url": "https://shop.example.com/products/monopoly",
            },
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
            "userAgentData": {"brands": [{"brand": "Chromium", "version": "124"}], "mobile": False, "platform": "Linux"},
        },
        "integrations": {},
        "originalTimestamp": (sent_at - timedelta(milliseconds=40)).isoformat(),
        "sentAt": sent_at.isoformat(),
    }


def write_addresses(directory: Path, count: int = 10_000) -> Path:
    """Public IPv4 addresses, one per single-event body (a visitor per address), seeded: the same every run."""
    import ipaddress
    import random

    rng, found = random.Random(16), []
    while len(found) < count:
        address = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        if address.is_global:
            found.append(str(address))
    path = directory / "addresses.txt"
    path.write_text("\n".join(found) + "\n")
    return path


def geoip_lookups(addresses: Path) -> dict:
    """Lookups/s of ingest.geo.locate: every address the first time (cold), then all of them again (cached)."""
    from ingest import geo

    geo.warm()
    found = addresses.read_text().split()
    started = time.perf_counter()
    located = sum(geo.locate(address) is not None for address in found)
    cold = len(found) / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(10):
        for address in found:
            geo.locate(address)
    cached = 10 * len(found) / (time.perf_counter() - started)
    stalls = {way: loop_stalls(found[:2_000], way) for way in ("on_loop", "off_loop")}
    return {
        "addresses": len(found),
        "located": located,
        "cold_lookups_per_s": cold,
        "cached_lookups_per_s": cached,
        "loop_stall_ms": stalls,
    }


def loop_stalls(addresses: list[str], way: str) -> dict:
    """How long the event loop goes without serving anything while requests locate addresses never seen
    (cold cache): a 1 ms ticker's wake-up gaps (p50, p99, max) while 8 request-like tasks each locate
    their share of the addresses, `on_loop` (ingest.geo.locate called on the loop, as the collector did)
    or `off_loop` (ingest.geo.locate_off_loop, as it does)."""
    import asyncio

    from ingest import geo

    async def run() -> dict:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async def requests(share: list[str]) -> None:
            for address in share:
                geo.locate(address) if way == "on_loop" else await geo.locate_off_loop(address)
                await asyncio.sleep(0)  # the next request

        geo.locate.cache_clear()
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(requests(addresses[i::8]) for i in range(8)))
        done.set()
        await tick
        ordered = sorted(gaps)
        return {"p50": ordered[len(ordered) // 2] * 1000, "p99": ordered[int(len(ordered) * 0.99)] * 1000, "max": ordered[-1] * 1000}

    return asyncio.run(run())


def write_sources(directory: Path, geoip: bool) -> Path:
    path = directory / f"sources-geoip-{geoip}.json"
    path.write_bytes(orjson.dumps([{"id": "bench", "write_key": WRITE_KEY, "geoip": geoip}]))
    return path


def write_bodies(directory: Path) -> tuple[Path, Path, int, int]:
    """Single-call bodies and batch bodies, one JSON document per line."""
    sent_at = datetime.now(UTC)
    singles, batches = directory / "single.jsonl", directory / "batch.jsonl"
    singles.write_bytes(b"\n".join(orjson.dumps(browser_track(n, sent_at)) for n in range(10_000)) + b"\n")
    lines = []
    for b in range(200):
        calls = [browser_track(1_000_000 + b * BATCH_SIZE + i, sent_at) for i in range(BATCH_SIZE)]
        for call in calls:
            del call["sentAt"]
        lines.append(orjson.dumps({"batch": calls, "sentAt": sent_at.isoformat(), "context": {"ip": None}}))
    batches.write_bytes(b"\n".join(lines) + b"\n")
    return singles, batches, len(singles.read_bytes().splitlines()[0]), len(lines[0])


# -- infrastructure -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server(app: str, port: int, env: dict[str, str], factory: bool = False) -> Iterator[str]:
    command = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "uvicorn", app, "--port", str(port), *UVICORN_FLAGS]
    proc = subprocess.Popen(command + (["--factory"] if factory else []), env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:  # the null app says 200 to anything
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not start")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def wrk(url: str, path: str, bodies: Path, seconds: int, connections: int, addresses: Path | None = None) -> dict:
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    env = {**os.environ, "BENCH_PATH": path, "BENCH_BODIES": str(bodies), "BENCH_AUTH": auth}
    if addresses is not None:
        env["BENCH_FORWARDED_FOR"] = str(addresses)
    command = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(BENCH / "collector_wrk.lua"),
        url + path,
    ]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE).group(1)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_latency": p50,
        "p99_latency": p99,
        "p50_ms": milliseconds(p50),
        "p99_ms": milliseconds(p99),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


def raw_events_written(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records, events) on the raw topic: every record read once, its events counted from the envelope header."""
    from confluent_kafka import Consumer, TopicPartition

    from schemas.envelope import COUNT_HEADER, header, is_envelope

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end])
        records = events = 0
        while records < sum(ends.values()):
            for message in consumer.consume(10_000, timeout=5):
                if message.error() is None:
                    records += 1
                    events += int(header(message.headers(), COUNT_HEADER)) if is_envelope(message.headers()) else 1
        return records, events
    finally:
        consumer.close()


def milliseconds(latency: str) -> float:
    """wrk's latency figure ("850.00us", "1.23ms", "1.02s") in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", latency).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit]


# -- the run --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=256, help="wrk connections (same for every scenario)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk (make bench-collector does it)")
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the broker started below inherits it; servers are pinned apart

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="footfall-bench-"))
    singles, batches, single_bytes, batch_bytes = write_bodies(work)
    addresses = write_addresses(work)
    names = (
        "null-single",
        "durable-single",
        "collector-single",
        "collector-single-no-window",
        "null-batch",
        "durable-batch",
        "collector-batch",
        "xff-nogeo",
        "xff-geo",
        "light-null-single",
        "light-collector-single",
        "light-collector-single-no-window",
    )
    samples: dict[str, list[dict]] = {name: [] for name in names}
    with broker() as bootstrap:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
        ensure_topics(bootstrap, settings.topics.all())
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(f"{prefix}.durable", settings.partitions, 1)])[f"{prefix}.durable"].result()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FOOTFALL_", "PROMETHEUS_"))}
        collector_env = {
            **base_env,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FOOTFALL_TOPIC_PREFIX": prefix,
            "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=bench",
        }
        no_window_env = {**collector_env, "FOOTFALL_COLLECTOR_FLUSH_SECONDS": "0"}
        null_env = {**base_env, "PYTHONPATH": str(BENCH)}
        durable_env = {
            **null_env,
            "PYTHONPATH": f"{BENCH}:{REPO}",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BENCH_TOPIC": f"{prefix}.durable",
        }
        behind_proxy = {**collector_env, "FOOTFALL_TRUSTED_PROXIES": "127.0.0.1"}
        no_geo_env = {**behind_proxy, "FOOTFALL_SOURCES_FILE": str(write_sources(work, geoip=False))}
        geo_env = {**behind_proxy, "FOOTFALL_SOURCES_FILE": str(write_sources(work, geoip=True))}
        port = free_port()
        full, light = args.connections, LIGHT_CONNECTIONS
        scenarios = [
            ("null-single", "collector_null_app:app", null_env, False, "/v1/track", singles, None, full),
            ("durable-single", "collector_durable_app:app", durable_env, False, "/v1/track", singles, None, full),
            ("collector-single", "ingest.app:create_app", collector_env, True, "/v1/track", singles, None, full),
            ("collector-single-no-window", "ingest.app:create_app", no_window_env, True, "/v1/track", singles, None, full),
            ("null-batch", "collector_null_app:app", null_env, False, "/v1/batch", batches, None, full),
            ("durable-batch", "collector_durable_app:app", durable_env, False, "/v1/batch", batches, None, full),
            ("collector-batch", "ingest.app:create_app", collector_env, True, "/v1/batch", batches, None, full),
            ("xff-nogeo", "ingest.app:create_app", no_geo_env, True, "/v1/track", singles, addresses, full),
            ("xff-geo", "ingest.app:create_app", geo_env, True, "/v1/track", singles, addresses, full),
            ("light-null-single", "collector_null_app:app", null_env, False, "/v1/track", singles, None, light),
            ("light-collector-single", "ingest.app:create_app", collector_env, True, "/v1/track", singles, None, light),
            ("light-collector-single-no-window", "ingest.app:create_app", no_window_env, True, "/v1/track", singles, None, light),
        ]
        for round_number in range(args.rounds):
            for name, app, env, factory, path, bodies, forwarded, connections in scenarios:
                with server(app, port, env, factory) as url:
                    wrk(url, path, bodies, 2, connections, forwarded)  # warm-up: connections, caches, producer
                    result = wrk(url, path, bodies, args.seconds, connections, forwarded)
                samples[name].append(result)
                print(
                    f"round {round_number + 1} {name:17s} {result['requests_per_s']:10.0f} req/s  "
                    f"p50 {result['p50_latency']:>8s}  p99 {result['p99_latency']:>8s}  non-2xx {result['non_2xx']}",
                    flush=True,
                )
        records, written = raw_events_written(bootstrap, settings.topics.raw.name)
    lookups = geoip_lookups(addresses)
    shutil.rmtree(work, ignore_errors=True)
    load = {"before": load_before, "after": os.getloadavg()}
    report(samples, args, single_bytes, batch_bytes, written, lookups, records, settings.collector_flush_seconds, load)


def flush_window_cost(samples: dict[str, list[dict]]) -> dict:
    """Per load: the median p50 and p99 with the default window and with none, and what the window adds."""
    cost = {}
    for load, prefix in (("full", ""), ("light", "light-")):
        with_window = {q: statistics.median(s[f"{q}_ms"] for s in samples[f"{prefix}collector-single"]) for q in ("p50", "p99")}
        without = {q: statistics.median(s[f"{q}_ms"] for s in samples[f"{prefix}collector-single-no-window"]) for q in ("p50", "p99")}
        cost[load] = {
            "window_ms": with_window,
            "no_window_ms": without,
            "added_ms": {q: with_window[q] - without[q] for q in ("p50", "p99")},
        }
    return cost


def report(
    samples: dict[str, list[dict]],
    args: argparse.Namespace,
    single_bytes: int,
    batch_bytes: int,
    written: int,
    lookups: dict,
    records: int,
    flush_seconds: float,
    load: dict | None = None,
) -> None:
    median = {name: statistics.median(s["requests_per_s"] for s in runs) for name, runs in samples.items()}
    results = {
        "command": "make bench-collector",
        "setup": {
            "server": "uvicorn " + " ".join(UVICORN_FLAGS),
            "server_cpu": SERVER_CPU,
            "load_cpu": LOAD_CPU,
            "load_generator": f"wrk -t1 -c{args.connections} -d{args.seconds}s",
            "rounds": args.rounds,
            "single_body_bytes": single_bytes,
            "batch_events": BATCH_SIZE,
            "batch_body_bytes": batch_bytes,
        },
        "median_requests_per_s": median,
        "single_events_per_s_per_worker": median["collector-single"],
        "single_ratio_to_null": median["collector-single"] / median["null-single"],
        "durable_floor_requests_per_s": median["durable-single"],
        "durable_floor_ratio_to_null": median["durable-single"] / median["null-single"],
        "batch_events_per_s_per_worker": median["collector-batch"] * BATCH_SIZE,
        "durable_batch_floor_events_per_s": median["durable-batch"] * BATCH_SIZE,
        "batch_ratio_to_null": median["collector-batch"] / median["null-batch"],
        "geoip_ratio": median["xff-geo"] / median["xff-nogeo"],
        "geoip_lookups": lookups,
        "targets": {"single_ratio_to_null": 0.6, "batch_events_per_s_per_worker": 100_000},
        "raw_events_in_kafka": written,
        "raw_records_in_kafka": records,
        "load_average": load,  # (1, 5, 15 min) before and after: other work on the machine, which the ratios assume equal
        "flush_window": {
            "seconds": flush_seconds,
            "light_connections": LIGHT_CONNECTIONS,
            "full_connections": args.connections,
            **flush_window_cost(samples),
        },
        "non_2xx_answers": sum(s["non_2xx"] for name, runs in samples.items() for s in runs if "collector" in name),
        "samples": samples,
    }
    path = write_result("collector", results)
    print(
        f"\nsingle events: {results['single_events_per_s_per_worker']:,.0f} req/s per worker "
        f"= {results['single_ratio_to_null']:.2f}× the null app (target ≥ 0.6×)"
    )
    print(
        f"floor: the null app that waits for Kafka's acknowledgement: {results['durable_floor_requests_per_s']:,.0f} req/s "
        f"= {results['durable_floor_ratio_to_null']:.2f}× the null app"
    )
    print(
        f"batches of {BATCH_SIZE}: {results['batch_events_per_s_per_worker']:,.0f} events/s per worker "
        f"= {results['batch_ratio_to_null']:.2f}× the null app's batch requests/s (target ≥ 100,000 events/s)"
    )
    print(
        f"floor: batches split into calls, written in envelopes, nothing else: {results['durable_batch_floor_events_per_s']:,.0f} events/s"
    )
    print(
        f"GeoIP: {median['xff-geo']:,.0f} req/s with it, {median['xff-nogeo']:,.0f} without = {results['geoip_ratio']:.2f}×; "
        f"lookups/s {lookups['cold_lookups_per_s']:,.0f} cold, {lookups['cached_lookups_per_s']:,.0f} cached "
        f"({lookups['located']:,} of {lookups['addresses']:,} addresses located)"
    )
    for load_kind in ("full", "light"):
        cost = results["flush_window"][load_kind]
        print(
            f"flush window {flush_seconds * 1000:g} ms at {load_kind} load: p50 {cost['window_ms']['p50']:.2f} ms ({cost['added_ms']['p50']:+.2f}), "
            f"p99 {cost['window_ms']['p99']:.2f} ms ({cost['added_ms']['p99']:+.2f}) against no window"
        )
    print(f"non-2xx answers from the collector: {results['non_2xx_answers']}; raw events in Kafka: {written:,} in {records:,} records")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
