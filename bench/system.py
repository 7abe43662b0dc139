"""The whole pipeline on this machine, broker included, driven by `footfall loadgen`.

    make bench-system        (or: .venv/bin/python -m bench.system [--step-seconds 15])

1. Sustained rate: the offered rate steps up (loadgen batches of --batch-size, 50 by default; 0: every call
   on its own request, as single-event traffic), seeded traffic; at each step it
   reports the acknowledged rate, freshness (collector acknowledgement → the event is queryable in
   ClickHouse, seen by polling the read API every 0.2 s) as p50/p95/p99, CPU and memory per component
   (and how busy the whole machine was while the load ran),
   and consumer lag over time. Sustained = the highest step absorbed (≥ 95 % of the offered rate
   acknowledged, every event queryable) with freshness p99 ≤ 2 s.
2. Scaling: a backlog of raw events (envelopes of --per-envelope events, as the collector writes them) drained
   by 1, then by 2 processor workers (4 partitions, so more partitions than workers), as events/s. Across a worker joining and then leaving mid-drain: the longest
   pause in the group's progress, and whether every event reached `enriched` (none lost) and how many
   extra copies the rebalance caused (collapsed downstream by the events table's key).
Writes bench/results/system.json and PNG plots next to it; `make bench-report` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.common import REPO, RESULTS_DIR, broker, free_port, write_result
from bench.processors import PARTITIONS, produce, raw_events, records_of, wait_for_commits
from footfall import traffic
from footfall.lag import consumer_lag
from footfall.loadgen import LoadReport, run_load
from footfall.supervisor import NEVER, Child, RestartPolicy, Supervisor, footfall_command, settings_env
from footfall.topics import ensure_topics, topic_message_ids
from processors.app import EXIT_AGENT_FAILED
from schemas.config import FootfallSettings

WRITE_KEY = "bench-write-key"
FRESHNESS_TARGET_S = 2.0


RESTART_A_FAILED_WORKER = RestartPolicy(exit_codes=frozenset({EXIT_AGENT_FAILED}), max_restarts=None)


def quantile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


@dataclass
class Pipeline:
    settings: FootfallSettings
    env: dict[str, str]
    url: str
    supervisor: Supervisor = field(default_factory=Supervisor)
    procs: dict[str, list[Child]] = field(default_factory=dict)  # by stage, for the CPU and memory columns

    def start(self, stage: str) -> Child:
        """A stage, not restarted (a benchmark that needed restarts would measure them); output discarded."""
        child = self.supervisor.start(Child(stage, footfall_command(stage), env=self.env, cwd=REPO, policy=NEVER))
        self.procs.setdefault(stage, []).append(child)
        return child

    def sql(self, query: str, parameters: dict | None = None) -> list:
        url = f"http://127.0.0.1:{self.settings.read_api_port}/sql"
        admin = (Path(self.settings.data_dir) / "admin.key").read_text().strip()
        body = {"query": query, "parameters": parameters or {}}
        response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        response.raise_for_status()
        return response.json()["rows"]


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(url)


@contextlib.contextmanager
def pipeline(bootstrap: str, data_dir: str, processors: int = 1) -> Iterator[Pipeline]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = FootfallSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=PARTITIONS,
        data_dir=Path(data_dir),
        database=prefix.replace("-", "_"),
        collector_port=free_port(),
        read_api_port=free_port(),
    )
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FOOTFALL_TOPIC_PREFIX": prefix,
        "FOOTFALL_PARTITIONS": str(PARTITIONS),
        "FOOTFALL_DATA_DIR": data_dir,
        "FOOTFALL_DATABASE": settings.database,
        "FOOTFALL_COLLECTOR_PORT": str(settings.collector_port),
        "FOOTFALL_READ_API_PORT": str(settings.read_api_port),
        "FOOTFALL_PROCESSOR_METRICS_PORT": "0",
        "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=bench",
        "FOOTFALL_DEVICE_EVENTS_PER_SECOND": "100000",
    }
    ensure_topics(bootstrap, settings.topics.all())
    run = Pipeline(settings, env, f"http://127.0.0.1:{settings.collector_port}")
    try:
        run.start("projector")
        wait_http(f"http://127.0.0.1:{settings.read_api_port}/healthz", 120)
        for _ in range(processors):
            run.start("processor")
        run.start("collector")
        wait_http(f"{run.url}/readyz", 60)
        warm_up(run)
        yield run
    finally:
        run.supervisor.stop()


def warm_up(run: Pipeline, timeout_s: float = 120) -> None:
    """One event through every stage before anything is measured: until the processor has joined its group
    and recovered its tables, events wait in Kafka, and the first step's freshness would measure start-up."""
    response = httpx.post(f"{run.url}/v1/track", json={"anonymousId": "warm-up", "event": "Warm-up"}, auth=(WRITE_KEY, ""), timeout=10)
    response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while not run.sql(f"SELECT count() FROM {run.settings.database}.events")[0][0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the warm-up event did not become queryable")
        time.sleep(0.3)


class Watcher(threading.Thread):
    """Samples, every `interval_s`: which events became queryable (first seen), consumer lag, and CPU/RSS."""

    def __init__(self, run: Pipeline, broker_pid: int | None, interval_s: float = 0.2):
        super().__init__(daemon=True)
        self.run_, self.interval_s, self.stopping = run, interval_s, threading.Event()
        self.first_seen: dict[str, float] = {}
        self.lag: list[tuple[float, int, int]] = []  # (time, processor lag, projector lag)
        self.components = {name: [psutil.Process(p.pid) for p in procs] for name, procs in run.procs.items()}
        if broker_pid:
            self.components["kafka"] = [psutil.Process(broker_pid)]
        for procs in self.components.values():
            for proc in procs:
                proc.cpu_percent(None)  # start counting
        self.usage: dict[str, dict] = {}

    def run(self) -> None:
        settings, last_lag = self.run_.settings, 0.0
        high = dict.fromkeys(range(PARTITIONS), -1)  # per enriched partition: the highest offset seen in `events`
        while not self.stopping.is_set():
            # A projector batch inserts a contiguous offset range per `enriched` partition at once, so everything up
            # to the highest offset seen is there: each poll asks only for what is newer. The `$` rows of profile
            # changes carry another topic's offsets, so they are left out.
            newer = " OR ".join(f"(_partition = {p} AND _offset > {o})" for p, o in high.items())
            with contextlib.suppress(httpx.HTTPError, KeyError):
                rows = self.run_.sql(
                    f"SELECT message_id, _partition, _offset FROM {settings.database}.events WHERE type != 'profile_change' AND ({newer})"
                )
                now = time.time()
                for message_id, partition, offset in rows:
                    self.first_seen.setdefault(message_id, now)
                    high[partition] = max(high[partition], offset)
            if time.monotonic() - last_lag > 1:
                last_lag = time.monotonic()
                with contextlib.suppress(Exception):
                    topics = settings.topics
                    processing = sum(
                        p.lag
                        for p in consumer_lag(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}-processor", [topics.raw.name])
                    )
                    projecting = sum(
                        p.lag
                        for p in consumer_lag(
                            settings.kafka_bootstrap_servers, f"{settings.topic_prefix}-projector", [topics.enriched.name]
                        )
                    )
                    self.lag.append((time.time(), processing, projecting))
            self.stopping.wait(self.interval_s)

    def take_usage(self) -> dict[str, dict]:
        """CPU (% of one core) and resident memory per component since the last call."""
        usage = {}
        for name, procs in self.components.items():
            with contextlib.suppress(psutil.Error):
                cpu = sum(p.cpu_percent(None) for p in procs)
                rss = sum(p.memory_info().rss for p in procs)
                usage[name] = {"cpu_percent": round(cpu), "rss_mib": round(rss / 2**20)}
        return usage


def kafka_pid() -> int | None:
    """The newest broker process: the one this run started (another may be running for something else)."""
    brokers = [p for p in psutil.process_iter(["cmdline", "create_time"]) if any("kafka.Kafka" in part for part in p.info["cmdline"] or [])]
    return max(brokers, key=lambda p: p.info["create_time"]).pid if brokers else None


def _load_with_cpu(url: str, seed: int, rate: float, seconds: float, batch_size: int, concurrency: int) -> tuple[LoadReport, float]:
    """One step's load and the CPU seconds it took (run in the load generator's own process)."""
    started = time.process_time()
    calls = traffic.calls(seed, visitors=20_000)
    report = asyncio.run(run_load(url, WRITE_KEY, calls, rate=rate, batch_size=batch_size, concurrency=concurrency, duration=seconds))
    return report, time.process_time() - started


def load_in_own_process(url: str, seed: int, rate: float, seconds: float, batch_size: int) -> tuple[LoadReport, float]:
    """`footfall loadgen` in a process of its own, as an operator runs it: paced in this process, which also polls
    freshness, single-event traffic fell short of the offered rate because of the pacing, not the pipeline."""
    # Single-event requests each wait for the collector's flush window and Kafka's ack: more connections keep
    # the offered rate from being bounded by the load generator instead of the system.
    concurrency = 8 if batch_size else 128
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_load_with_cpu, url, seed, rate, seconds, batch_size, concurrency).result()


def machine_busy_percent(before, after) -> int:
    """How busy all the machine's cores were between two psutil.cpu_times(), as % of one core (2 cores: up to
    200): whether the components' shares add up to a full machine, beside the bench's own process and the rest."""
    counted = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")  # guest time is inside user
    total = sum(getattr(after, f, 0) - getattr(before, f, 0) for f in counted)
    idle = sum(getattr(after, f, 0) - getattr(before, f, 0) for f in ("idle", "iowait"))
    return round(100 * (psutil.cpu_count() or 1) * (1 - idle / total)) if total > 0 else 0


def step(run: Pipeline, watcher: Watcher, seed: int, rate: float, seconds: float, batch_size: int) -> dict:
    cpu_before = psutil.cpu_times()
    report, load_cpu_s = load_in_own_process(run.url, seed, rate, seconds, batch_size)
    machine_percent = machine_busy_percent(cpu_before, psutil.cpu_times())
    acked = dict(report.acks)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(m not in watcher.first_seen for m in acked):
        time.sleep(0.5)
    freshness = [watcher.first_seen[m] - at for m, at in acked.items() if m in watcher.first_seen]
    unseen = [m for m in acked if m not in watcher.first_seen]
    # Whether an event the watcher never saw is in `events` after all (the watch missed it) or not (lost or late).
    stored = (
        run.sql(f"SELECT count() FROM {run.settings.database}.events WHERE message_id IN {{ids:Array(String)}}", {"ids": unseen})[0][0]
        if unseen
        else 0
    )
    result = {
        "offered_per_s": rate,
        "acknowledged_per_s": round(report.achieved_rate),
        "acknowledged": report.acknowledged,
        "queryable": len(freshness),
        "unseen_but_stored": stored,
        "requests": report.requests,
        "retries": report.retries,
        "errors": dict(report.errors),
        "request_latency_p50_ms": report.latency_ms(0.5),
        "request_latency_p99_ms": report.latency_ms(0.99),
        "freshness_p50_s": quantile(freshness, 0.5),
        "freshness_p95_s": quantile(freshness, 0.95),
        "freshness_p99_s": quantile(freshness, 0.99),
        "usage": {
            **watcher.take_usage(),
            "loadgen": {"cpu_percent": round(100 * load_cpu_s / max(report.seconds, 1e-9))},
            "machine": {"cpu_percent": machine_percent},  # while the load ran
        },
        "timeline": sorted((at, watcher.first_seen[m] - at) for m, at in acked.items() if m in watcher.first_seen)[::20],
    }
    result["absorbed"] = (
        report.acknowledged >= 0.95 * rate * seconds
        and len(freshness) == report.acknowledged
        and (result["freshness_p99_s"] or 99) <= FRESHNESS_TARGET_S
    )
    print(
        f"offered {rate:>6,.0f}/s: acked {result['acknowledged_per_s']:>6,}/s, queryable {len(freshness)}/{report.acknowledged} "
        f"(of the rest, {stored} stored but unseen by the watch), {report.requests} requests ({report.retries} retried, "
        f"errors {dict(report.errors)}), request p50 {report.latency_ms(0.5)} ms, p99 {report.latency_ms(0.99)} ms, "
        f"freshness p50 {result['freshness_p50_s']}, p99 {result['freshness_p99_s']} s, {result['usage']}"
    )
    return result


def sustained(bootstrap: str, rates: list[float], seconds: float, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="footfall-bench-system-") as data_dir, pipeline(bootstrap, data_dir) as run:
        watcher = Watcher(run, kafka_pid())
        watcher.start()
        steps = []
        try:
            for n, rate in enumerate(rates):
                steps.append(step(run, watcher, seed=100 + n, rate=rate, seconds=seconds, batch_size=batch_size))
                if not steps[-1]["absorbed"]:
                    break
        finally:
            watcher.stopping.set()
            watcher.join(5)
        best = max((s for s in steps if s["absorbed"]), key=lambda s: s["acknowledged_per_s"], default=None)
        return {
            "steps": steps,
            "batch_size": batch_size,
            "sustained_per_s": best and best["acknowledged_per_s"],
            "at_sustained": best,
            "lag": watcher.lag,
        }


def drain(bootstrap: str, events: int, workers: int, per_envelope: int, join_and_leave: bool = False) -> dict:
    """A raw backlog drained by `workers` processors; with join_and_leave, a second worker joins at a third
    of the way and one leaves (SIGTERM) at two thirds. Progress is the group's committed raw offsets, in
    records (envelopes), reported as the share of the events they hold."""
    backlog = raw_events(events, devices=2_000, seed=7)
    records = records_of(backlog, per_envelope)
    with tempfile.TemporaryDirectory(prefix="footfall-bench-drain-") as data_dir:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
        ensure_topics(bootstrap, settings.topics.all())
        procs: list[Child] = []
        supervisor = Supervisor()

        def start_worker(n: int) -> None:
            """A worker restarted when it stops itself (exit 70), as systemd or `footfall run` would: around
            rebalances faust can skip records, and the processors' continuity guard then restarts the worker."""
            worker_dir = Path(data_dir) / f"worker-{n}"
            env = settings_env(settings.model_copy(update={"data_dir": worker_dir}))
            procs.append(
                supervisor.start(
                    Child("processor", footfall_command("processor"), env=env, log_dir=worker_dir / "logs", policy=RESTART_A_FAILED_WORKER)
                )
            )

        try:
            for n in range(workers):
                start_worker(n)
            # Warm-up: the group is formed. Workers that start together can sit idle on their partitions (faust) until
            # their stall watch restarts them (FOOTFALL_PROCESSOR_STALL_SECONDS), so this may take minutes.
            produce(bootstrap, settings.topics.raw.name, records_of(raw_events(1, 1, seed=99), 0))
            wait_for_commits(bootstrap, f"{prefix}-processor", settings.topics.raw.name, 1, 480)
            started = time.perf_counter()
            produce(bootstrap, settings.topics.raw.name, records)
            progress, marks = [], {}
            group = f"{prefix}-processor"
            while True:
                done_records = sum(max(p.committed, 0) for p in consumer_lag(bootstrap, group, [settings.topics.raw.name])) - 1
                done = round(events * done_records / len(records))
                progress.append((time.perf_counter() - started, done))
                if done_records >= len(records):
                    break
                if join_and_leave and "join" not in marks and done >= events / 3:
                    marks["join"] = time.perf_counter() - started
                    start_worker(len(procs))
                if join_and_leave and "join" in marks and "leave" not in marks and done >= 2 * events / 3:
                    marks["leave"] = time.perf_counter() - started
                    threading.Thread(target=procs[0].stop, daemon=True).start()  # SIGTERM: a clean leave
                if time.perf_counter() - started > 900:
                    raise TimeoutError(f"drain stuck at {done}/{events}")
                time.sleep(0.2)
            elapsed = progress[-1][0]

            enriched = topic_message_ids(settings, settings.topics.enriched.name)
            expected = {e.message_id for e in backlog}
            result = {
                "workers": workers,
                "events": events,
                "records": len(records),
                "events_per_s": round(events / elapsed),
                "restarts": sum(p.restarts for p in procs),
                "lost": len(expected - set(enriched)),
                "extra_copies": len([m for m in enriched if m in expected]) - len(expected),
            }
            if join_and_leave:
                result["marks"] = marks
                result["progress"] = progress
                for name, at in marks.items():
                    window = [(t, d) for t, d in progress if at - 1 <= t <= at + 60]
                    result[f"pause_on_{name}_s"] = round(_longest_stall(window), 2)
            print(
                f"drain with {workers} worker(s){' (join+leave)' if join_and_leave else ''}: {result['events_per_s']:,} events/s, "
                f"lost {result['lost']}, extra copies {result['extra_copies']}, worker restarts {result['restarts']}"
            )
            return result
        finally:
            supervisor.stop()


def _longest_stall(progress: list[tuple[float, int]]) -> float:
    """The longest time the committed count stood still."""
    longest, since = 0.0, None
    for (t0, d0), (t1, d1) in zip(progress, progress[1:], strict=False):
        if d1 == d0:
            since = t0 if since is None else since
            longest = max(longest, t1 - since)
        else:
            since = None
    return longest


def plots(result: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    steps = result["sustained"]["steps"]
    figure, axis = plt.subplots(figsize=(8, 4))
    start = min(t for s in steps for t, _ in s["timeline"]) if any(s["timeline"] for s in steps) else 0
    for s in steps:
        axis.scatter(
            [t - start for t, _ in s["timeline"]], [f for _, f in s["timeline"]], s=3, label=f"{s['offered_per_s']:,.0f}/s offered"
        )
    axis.axhline(FRESHNESS_TARGET_S, color="red", linestyle="--", linewidth=1, label="2 s target")
    axis.set(xlabel="seconds into the run", ylabel="freshness (s): ack → queryable", title="Freshness over time, by offered rate")
    axis.legend(fontsize=7)
    written.append(_save(figure, "system-freshness.png"))

    figure, axis = plt.subplots(figsize=(6, 4))
    offered = [s["offered_per_s"] for s in steps]
    axis.plot(offered, [s["acknowledged_per_s"] for s in steps], marker="o", label="acknowledged")
    axis.plot(
        offered,
        [s["queryable"] / max(s["acknowledged"], 1) * s["acknowledged_per_s"] for s in steps],
        marker="x",
        label="queryable within 60 s",
    )
    axis.plot(offered, offered, linestyle=":", color="grey", label="offered")
    axis.set(xlabel="offered events/s", ylabel="events/s", title="Throughput against offered rate")
    axis.legend(fontsize=7)
    written.append(_save(figure, "system-throughput.png"))

    if "scaling" not in result:
        return written
    rebalance = result["scaling"]["join_and_leave"]
    figure, axis = plt.subplots(figsize=(8, 4))
    times = [t for t, _ in rebalance["progress"]]
    done = [d for _, d in rebalance["progress"]]
    axis.plot(times, [rebalance["events"] - d for d in done], label="processor lag (raw events not yet committed)")
    for name, at in rebalance["marks"].items():
        axis.axvline(
            at, color="red" if name == "leave" else "green", linestyle="--", label=f"worker {'joins' if name == 'join' else 'leaves'}"
        )
    axis.set(xlabel="seconds", ylabel="events", title="Lag while a worker joins and leaves")
    axis.legend(fontsize=7)
    written.append(_save(figure, "system-rebalance-lag.png"))
    return written


def _save(figure, name: str) -> str:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / name, dpi=110)
    return name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="250,500,1000,2000,4000,8000")
    parser.add_argument("--step-seconds", type=float, default=15)
    parser.add_argument("--drain-events", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=50, help="calls per loadgen request (0: single-event requests)")
    parser.add_argument("--per-envelope", type=int, default=100, help="events per raw record in the drain backlog")
    parser.add_argument("--skip-scaling", action="store_true", help="only the sustained steps (e.g. a --batch-size 0 run)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    load_before = os.getloadavg()
    with broker() as bootstrap:
        result = {
            "command": f"make bench-system BENCH_ARGS='{' '.join(sys.argv[1:]) or f'--batch-size {args.batch_size}'}'",
            "sustained": sustained(bootstrap, rates, args.step_seconds, args.batch_size),
        }
        if not args.skip_scaling:
            one = drain(bootstrap, args.drain_events, workers=1, per_envelope=args.per_envelope)
            two = drain(bootstrap, args.drain_events, workers=2, per_envelope=args.per_envelope)
            result["scaling"] = {
                "one_worker": one,
                "two_workers": two,
                "gain": round(two["events_per_s"] / one["events_per_s"], 2),
                "join_and_leave": drain(bootstrap, args.drain_events, workers=1, per_envelope=args.per_envelope, join_and_leave=True),
            }
    # (1, 5, 15 min) before and after: the machine is shared, and other work on it lowers every absolute figure
    result["load_average"] = {"before": [round(v, 1) for v in load_before], "after": [round(v, 1) for v in os.getloadavg()]}
    result["plots"] = plots(result) if args.batch_size else []  # the batched run's plots are the ones BENCHMARKS.md shows
    for part in result["sustained"]["steps"]:
        part.pop("timeline")  # plotted; too long for the JSON
    if "scaling" in result:
        result["scaling"]["join_and_leave"].pop("progress")
    name = "system" if args.batch_size else "system-single-events"
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
