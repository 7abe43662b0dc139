"""Dynamic configs: evaluation time for 50 configs, and the collector's POST /v1/configs against its own /v1/track.

    make bench-configs            (or: .venv/bin/python -m bench.configs [--seconds 8] [--rounds 3])

1. Evaluation, pure (no I/O): the subject lookup in a worker's state (ConfigState: distinct id → person →
   properties, 20,000 persons loaded) and `serve` over 50 configs of mixed shapes (boolean rollouts, string
   and JSON variants, nested AND/OR property conditions, 100 overrides each), per request, for 5,000 requests
   with distinct ids. Reports p50/p99/max per request.
2. HTTP, the same stack as bench.collector (one uvicorn worker pinned to CPU 0, wrk on CPU 1), in the same
   rounds: POST /v1/track with analytics.js-like bodies (the baseline); POST /v1/configs for 200 devices
   already exposed (`configs-repeat`: evaluation and answer, no write: the steady state of an app asking on
   every page); POST /v1/configs for 10,000 new devices (`configs-new`: each first request also writes its
   50 `$config_served` exposures and answers after Kafka's acknowledgement). Half the bodies are logged in
   and send properties.
Writes bench/results/configs.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Producer

from bench.collector import LOAD_CPU, WRITE_KEY, browser_track, raw_events_written, server, wrk
from bench.common import REPO, broker, free_port, write_result
from footfall.topics import ensure_topics
from ingest.configs import ConfigState
from schemas.config import FootfallSettings, tune_garbage_collector
from schemas.configs import ConfigSpec, ConfigVersion, serve
from schemas.identity import DistinctIdMapping
from schemas.person_properties import PersonProperties

CONFIGS = 50
PERSONS = 20_000
REQUESTS = 5_000
REPEAT_DEVICES = 200
PLANS = ("free", "pro", "team", "enterprise")


def config_spec(n: int) -> dict:
    """Config n of 50: a boolean rollout, a string experiment on a plan, or a JSON payload behind nested groups."""
    overrides = [{"ref": f"user-{n * 100 + i}", "variant": "false" if n % 3 == 0 else "b"} for i in range(100)]
    if n % 3 == 0:
        return {"key": f"flag-{n}", "rules": [
            {"condition": {"kind": "property", "property": "$is_identified", "operator": "equals", "value": True}, "rollout_percent": 50},
            {"rollout_percent": 10}], "overrides": overrides}  # fmt: skip
    if n % 3 == 1:
        return {"key": f"experiment-{n}", "type": "string", "default": "a",
                "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 30}, {"key": "c", "weight": 20}],
                "rules": [{"condition": {"kind": "property", "property": "plan", "operator": "in", "value": ["pro", "team"]}},
                          {"condition": {"kind": "property", "property": "seats", "operator": "gte", "value": 5}, "variant": "c"}],
                "overrides": overrides}  # fmt: skip
    nested = {"kind": "group", "match": "any", "conditions": [
        {"kind": "group", "match": "all", "conditions": [
            {"kind": "property", "property": "country", "operator": "in", "value": ["FR", "DE", "ES"]},
            {"kind": "property", "property": "email", "operator": "ends_with", "value": "@example.com"}]},
        {"kind": "property", "property": "signed_up", "operator": "after", "value": "2026-06-01T00:00:00Z"}]}  # fmt: skip
    return {"key": f"banner-{n}", "type": "json", "default": "a",
            "variants": [{"key": "a", "value": {"text": "hello", "color": "#000"}, "weight": 1}, {"key": "b", "value": {"text": "hi", "color": "#f00"}, "weight": 1}],
            "rules": [{"condition": nested, "rollout_percent": 80}], "overrides": overrides}  # fmt: skip


def versions() -> list[ConfigVersion]:
    now = datetime.now(UTC)
    return [
        ConfigVersion(spec=ConfigSpec.model_validate(config_spec(n)), version=1, change="created", changed_at=now) for n in range(CONFIGS)
    ]


def person_properties(i: int) -> dict:
    return {
        "plan": PLANS[i % 4],
        "seats": i % 12,
        "country": ("FR", "US", "DE", "BR")[i % 4],
        "email": f"u{i}@example.com",
        "signed_up": f"2026-{1 + i % 12:02d}-15T10:00:00Z",
        "$is_identified": i % 2 == 0,
    }


def loaded_state(settings: FootfallSettings) -> ConfigState:
    """A worker's state as the tail leaves it: the configs, PERSONS mappings and properties, applied record by record."""
    state = ConfigState(settings.topics)
    topics = settings.topics
    for record in versions():
        state.on_record(topics.configs.name, record.key.encode(), record.model_dump_json().encode())
    for i in range(PERSONS):
        mapping = DistinctIdMapping(distinct_id=f"user-{i}", person_id=f"person-{i}", version=1)
        state.on_record(topics.identities.name, mapping.distinct_id.encode(), mapping.model_dump_json().encode())
        stored = PersonProperties(person_id=f"person-{i}", version=1, properties=person_properties(i))
        state.on_record(topics.person_properties.name, stored.person_id.encode(), stored.model_dump_json().encode())
    return state


def evaluation(settings: FootfallSettings) -> dict:
    state = loaded_state(settings)
    tune_garbage_collector(settings)  # as the collector's workers do at start-up
    assert len(state.live) == CONFIGS
    timings = []
    reasons: dict[str, int] = {}
    now = datetime.now(UTC)
    for n in range(REQUESTS):
        started = time.perf_counter_ns()
        subject = state.subject(f"device-{n}", f"user-{n * 7 % PERSONS}" if n % 2 else None, {"country": "FR"} if n % 5 == 0 else {})
        served = [serve(config, subject, now) for config in state.configs(None)]
        timings.append(time.perf_counter_ns() - started)
        for item in served:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
    timings.sort()

    def pick(q: float) -> float:
        return timings[min(len(timings) - 1, int(q * len(timings)))] / 1000

    return {
        "requests": REQUESTS,
        "configs_per_request": CONFIGS,
        "p50_us": pick(0.5),
        "p99_us": pick(0.99),
        "max_us": timings[-1] / 1000,
        "per_config_p50_us": pick(0.5) / CONFIGS,
        "reasons": reasons,
    }


def config_asks(devices: range) -> list[bytes]:
    """One body per device; every other one logged in and sending properties."""
    lines = []
    for n in devices:
        ask: dict = {"anonymousId": str(uuid.UUID(int=n))}
        if n % 2:
            ask |= {"userId": f"user-{n}", "properties": {"plan": PLANS[n % 4], "seats": n % 12}}
        lines.append(orjson.dumps(ask))
    return lines


def write_bodies(directory: Path) -> tuple[Path, Path, Path]:
    """Track calls; config requests of 10,000 new devices; config requests of 200 devices seen before."""
    sent_at = datetime.now(UTC)
    tracks, new, repeat = directory / "track.jsonl", directory / "configs-new.jsonl", directory / "configs-repeat.jsonl"
    tracks.write_bytes(b"\n".join(orjson.dumps(browser_track(n, sent_at)) for n in range(10_000)) + b"\n")
    new.write_bytes(b"\n".join(config_asks(range(10_000))) + b"\n")
    repeat.write_bytes(b"\n".join(config_asks(range(100_000, 100_000 + REPEAT_DEVICES))) + b"\n")
    return tracks, new, repeat


def expose_once(url: str, bodies: Path) -> None:
    """Ask once per body before timing: their exposures are recorded, repeats within the window write nothing."""
    with httpx.Client(headers={"X-Write-Key": WRITE_KEY, "Content-Type": "application/json"}, timeout=30) as client:
        for line in bodies.read_bytes().splitlines():
            assert client.post(f"{url}/v1/configs", content=line).status_code == 200


def publish_configs(bootstrap: str, settings: FootfallSettings) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in versions():
        producer.produce(settings.topics.configs.name, record.model_dump_json().encode(), record.key)
    assert producer.flush(30) == 0


def wait_for_configs(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = httpx.post(f"{url}/v1/configs", json={"anonymousId": "warm"}, headers={"X-Write-Key": WRITE_KEY}, timeout=5)
        if response.status_code == 200 and len(response.json()["configs"]) == CONFIGS:
            return
        time.sleep(0.2)
    raise RuntimeError("the collector did not load the configs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk (make bench-configs does it)")
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    prefix = f"bench-configs-{uuid.uuid4().hex[:8]}"
    print("evaluating 50 configs per request in memory ...", flush=True)
    pure = evaluation(FootfallSettings(topic_prefix=prefix))
    print(f"evaluation of {CONFIGS} configs: p50 {pure['p50_us']:.0f} µs, p99 {pure['p99_us']:.0f} µs per request", flush=True)
    work = Path(tempfile.mkdtemp(prefix="footfall-bench-configs-"))
    tracks, new, repeat = write_bodies(work)
    samples: dict[str, list[dict]] = {"track": [], "configs-new": [], "configs-repeat": []}
    with broker() as bootstrap:
        settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
        ensure_topics(bootstrap, settings.topics.all())
        publish_configs(bootstrap, settings)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FOOTFALL_", "PROMETHEUS_"))}
        env = {
            **base_env,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FOOTFALL_TOPIC_PREFIX": prefix,
            "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=bench",
        }
        port = free_port()
        for round_number in range(args.rounds):
            scenarios = (("track", "/v1/track", tracks), ("configs-new", "/v1/configs", new), ("configs-repeat", "/v1/configs", repeat))
            for name, path, bodies in scenarios:
                with server("ingest.app:create_app", port, env, factory=True) as url:
                    if name.startswith("configs"):
                        wait_for_configs(url)
                    if name == "configs-repeat":
                        expose_once(url, bodies)
                    wrk(url, path, bodies, 2, args.connections)  # warm-up
                    result = wrk(url, path, bodies, args.seconds, args.connections)
                samples[name].append(result)
                print(
                    f"round {round_number + 1} {name:8s} {result['requests_per_s']:9.0f} req/s  p50 {result['p50_latency']:>8s}  "
                    f"p99 {result['p99_latency']:>8s}  non-2xx {result['non_2xx']}",
                    flush=True,
                )
        written = raw_events_written(bootstrap, settings.topics.raw.name)
    shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(s["requests_per_s"] for s in runs) for name, runs in samples.items()}
    results = {
        "command": "make bench-configs",
        "evaluation": pure,
        "setup": {
            "server": "uvicorn, 1 worker pinned to CPU 0 (bench.collector's flags)",
            "load_generator": f"wrk -t1 -c{args.connections} -d{args.seconds}s",
            "rounds": args.rounds,
            "configs": CONFIGS,
            "distinct_devices": 10_000,
        },
        "median_requests_per_s": median,
        "configs_repeat_ratio_to_track": median["configs-repeat"] / median["track"],
        "configs_new_ratio_to_track": median["configs-new"] / median["track"],
        "raw_records_in_kafka": written,
        "non_2xx_answers": sum(s["non_2xx"] for runs in samples.values() for s in runs),
        "samples": samples,
    }
    path = write_result("configs", results)
    print(
        f"\nPOST /v1/configs ({CONFIGS} configs), devices seen within the window: {median['configs-repeat']:,.0f} req/s = "
        f"{results['configs_repeat_ratio_to_track']:.2f}× POST /v1/track ({median['track']:,.0f} req/s) on the same worker"
    )
    print(
        f"new devices (50 exposures written per request): {median['configs-new']:,.0f} req/s = {results['configs_new_ratio_to_track']:.2f}×"
    )
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
