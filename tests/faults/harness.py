"""The fault suite's machinery: a whole pipeline of real `footfall` processes that can be killed (kill -9)
and restarted, a broker that can be restarted, seeded traffic with invalid calls mixed in, and what a run
left behind (events, sessions, persons, dead-letter rows) in a form two runs can be compared by.

Every stage runs as a subprocess of the real CLI, supervised as `footfall run` does it: a stage that exits on
its own (the processor stops itself with code 70 when a send to Kafka fails for good) is restarted, and the
exit is recorded. The projector runs as a subprocess too, on an embedded ClickHouse (chdb) of its own, and is
queried through its read API; with CLICKHOUSE_URL pointing at a server, it is queried directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from footfall.lag import consumer_lag
from footfall.loadgen import LoadReport, run_load
from footfall.supervisor import Child, RestartPolicy, Supervisor, footfall_command, settings_env
from footfall.topics import ensure_topics
from footfall.traffic import calls as model_calls
from schemas.config import FootfallSettings
from tests.infra import REPO_ROOT, LocalBroker, free_port
from tests.pipeline import WRITE_KEY, final_sessions, read_topic, tail, topic_values, wait_until

RESULTS = REPO_ROOT / "bench" / "results" / "faults.jsonl"
SOURCE_ID = "test-source"


# -- traffic ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The seeded model's calls with invalid ones mixed in, in the order they are sent, and how they are batched."""

    seed: int
    calls: tuple[dict[str, Any], ...]
    batch_size: int
    bad_ids: frozenset[str]  # messageIds of the calls the collector must refuse

    @property
    def valid(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["messageId"] not in self.bad_ids]

    def batch_of(self, message_id: str) -> int:
        return self._positions[message_id][0]

    def index_in_batch(self, message_id: str) -> int:
        return self._positions[message_id][1]

    @property
    def _positions(self) -> dict[str, tuple[int, int]]:
        cached = self.__dict__.get("_cached_positions")
        if cached is None:
            cached = {c["messageId"]: divmod(n, self.batch_size) for n, c in enumerate(self.calls)}
            object.__setattr__(self, "_cached_positions", cached)
        return cached


def _invalid_call(rng: random.Random, seed: int, n: int) -> dict[str, Any]:
    """A call the collector refuses (400, or `rejected[]` in a batch answer), of one of several kinds."""
    message_id = f"bad-{seed}-{n}"
    device = f"bad-device-{seed}-{n}"
    kind = rng.choice(("no_event", "no_id", "alias_without_previous", "naive_timestamp", "long_id", "unknown_type"))
    if kind == "no_event":
        return {"type": "track", "event": "", "anonymousId": device, "messageId": message_id}
    if kind == "no_id":
        return {"type": "identify", "traits": {"email": "nobody@example.com"}, "messageId": message_id}
    if kind == "alias_without_previous":
        return {"type": "alias", "userId": f"usr-{device}", "messageId": message_id}
    if kind == "naive_timestamp":
        return {"type": "page", "name": "Home", "anonymousId": device, "timestamp": "2025-01-01T00:00:00", "messageId": message_id}
    if kind == "long_id":
        return {"type": "page", "name": "Home", "anonymousId": "x" * 101, "messageId": message_id}
    return {"type": "purchase", "anonymousId": device, "messageId": message_id}


def make_traffic(seed: int, events: int, visitors: int, batch_size: int = 20, bad_every: int = 60) -> Traffic:
    """`events` calls of the model for `seed`, plus about one invalid call per `bad_every` (never two in a batch)."""
    rng = random.Random(f"faults-traffic-{seed}")
    out: list[dict[str, Any]] = []
    bad: set[str] = set()
    batches_with_bad: set[int] = set()
    for call in model_calls(seed, events=events, visitors=visitors):
        if rng.random() < 1 / bad_every:
            batch, position = divmod(len(out), batch_size)
            if batch not in batches_with_bad and position != batch_size - 1:  # a valid call follows it in its batch
                batches_with_bad.add(batch)
                invalid = _invalid_call(rng, seed, len(bad))
                bad.add(invalid["messageId"])
                out.append(invalid)
        out.append(call)
    # A batch holds at most one invalid call, and never only invalid ones.
    for start in range(0, len(out), batch_size):
        chunk = out[start : start + batch_size]
        assert sum(c["messageId"] in bad for c in chunk) <= 1 and any(c["messageId"] not in bad for c in chunk)
    return Traffic(seed, tuple(out), batch_size, frozenset(bad))


# -- stages -------------------------------------------------------------------------------------------------


class Stage(Child):
    """One `footfall <stage>` process and its successors, each incarnation logging to <name>[-n].log. Restarted
    whenever it exits without being asked to (as a service manager would), but not within 2 s of its start."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path):
        super().__init__(name, footfall_command(command), env=env, log_dir=log_dir, policy=RESTART_ALWAYS)


RESTART_ALWAYS = RestartPolicy(exit_codes=None, max_restarts=None, min_uptime_s=2)


@dataclass
class FaultRecord:
    kind: str
    target: str
    planned_s: float
    wall: str = ""  # the wall-clock time the fault began (to find it in the stages' logs)
    at_s: float = 0.0  # when the fault began, in seconds from the start of the load
    stopped_s: float = 0.0  # when the process was gone (a broker's clean stop takes a while)
    back_s: float = 0.0  # when it was started again


class Pipeline:
    """Collector, processor worker(s) and projector of one topic prefix and database, as supervised processes."""

    def __init__(self, settings: FootfallSettings, workdir: Path, clickhouse_server: str | None, processors: int = 1):
        self.workdir = workdir
        self.admin_key = secrets.token_urlsafe(24)
        self.server = clickhouse_server
        self.settings = settings.model_copy(
            update={
                "collector_port": free_port(),
                "read_api_port": free_port(),
                "data_dir": workdir / "data",
                "clickhouse_url": clickhouse_server or f"chdb://{(workdir / 'clickhouse').resolve()}",
            }
        )
        self.url = f"http://127.0.0.1:{self.settings.collector_port}"
        logs = workdir / "logs"
        base = {"FOOTFALL_BATCH_MAX_SECONDS": "0.5"}
        self.collector = Stage(
            "collector",
            "collector",
            settings_env(self.settings, **base, FOOTFALL_WRITE_KEYS=f"{WRITE_KEY}={SOURCE_ID}", FOOTFALL_COLLECTOR_WORKERS="1"),
            logs,
        )
        self.processors = [
            Stage(f"processor{n}", "processor", settings_env(self.settings, **base, FOOTFALL_DATA_DIR=str(workdir / f"processor{n}")), logs)
            for n in range(processors)
        ]
        self.projector = Stage("projector", "projector", settings_env(self.settings, **base, FOOTFALL_ADMIN_KEY=self.admin_key), logs)
        self.started = time.monotonic()
        self.supervisor = Supervisor(interval_s=0.5)

    @property
    def stages(self) -> list[Stage]:
        return [self.collector, *self.processors, self.projector]

    # -- life ---------------------------------------------------------------------------------------------

    def start(self, later: tuple[str, ...] = ()) -> None:
        """Start every stage but those in `later` (a worker that joins during the load: a scale-out)."""
        ensure_topics(self.settings.kafka_bootstrap_servers, self.settings.topics.all())
        for stage in (self.projector, *self.processors, self.collector):  # stopped the other way round
            if stage.name not in later:
                stage.start()
        self.wait_ready()
        for stage in (self.projector, *self.processors, self.collector):
            self.supervisor.watch(stage)

    def wait_ready(self, timeout_s: float = 120) -> None:
        def ready() -> bool:
            for stage in (self.collector, self.projector):
                if not stage.alive():
                    raise AssertionError(f"{stage.name} exited while starting:\n{tail(stage.log_path)}")
            try:
                return (
                    httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
                    and httpx.get(f"http://127.0.0.1:{self.settings.read_api_port}/healthz", timeout=2).status_code == 200
                )
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s, what="the collector and the projector's read API")

    def shutdown(self) -> None:
        self.supervisor.stop()  # collector first, projector last: each drains what it was given

    def exits(self) -> list[dict[str, Any]]:
        """The stages' exits nobody asked for: when (from the start), the code and the end of that incarnation's log."""
        return [
            {
                "stage": s.name,
                "at_s": round(e["at"] - self.started, 1),
                "code": e["code"],
                "incarnation": e["incarnation"],
                "log_tail": tail(s.log_of(e["incarnation"]), 6),
            }
            for s in self.stages
            for e in s.exits
        ]

    # -- reading what it stored -----------------------------------------------------------------------------

    def query(self, sql: str, timeout_s: float = 60) -> list[list]:
        """Rows of a read-only query: through the projector's read API (it owns the embedded engine), or the server."""
        if self.server:
            from projections.clickhouse import connect

            return [list(r) for r in connect(self.server).query(sql).result_rows]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{self.settings.read_api_port}/sql",
                    content=orjson.dumps({"query": sql}),
                    headers={"Authorization": f"Bearer {self.admin_key}"},
                    timeout=60,
                )
                if response.status_code == 200:
                    return response.json()["rows"]
                error = f"{response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:  # the projector is restarting
                error = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"the read API did not answer {sql!r}: {error}")
            time.sleep(0.5)

    def lag(self) -> dict[str, dict[str, int]]:
        """Lag per consumer group (the processor's and the projector's), per topic partition that has any."""
        topics = self.settings.topics
        prefix = self.settings.topic_prefix
        groups = {
            f"{prefix}-processor": [topics.raw.name, topics.sessioned.name, topics.identity_commands.name, topics.identities.name],
            f"{prefix}-projector": [topics.enriched.name, topics.sessions.name, topics.identities.name, topics.persons.name],
            f"{prefix}-persons": [topics.person_changes.name],  # the profiles' owners, when partitioned
        }
        return {
            group: {
                f"{row.topic.removeprefix(prefix + '.')}/{row.partition}": row.lag
                for row in consumer_lag(self.settings.kafka_bootstrap_servers, group, names)
                if row.lag
            }
            for group, names in groups.items()
        }

    def wait_quiet(self, timeout_s: float = 240, stuck_after_s: float = 120) -> dict[str, Any]:
        """Until every group's lag is 0 and the stored counts stayed the same for a few seconds.

        Answers {"quiet": True, "seconds": ...}; or quiet False with the lag left when the counts stopped moving
        for `stuck_after_s` while some lag stayed (a stage that stopped committing), or at the timeout. `stuck_after_s`
        outlasts a processor's stall watch (up to processor_stall_seconds) and the restart it causes."""
        started = time.monotonic()
        db = self.settings.database
        previous: tuple | None = None
        steady_since = time.monotonic()
        last: Any = None

        def counts() -> tuple:
            return tuple(
                self.query(
                    f"SELECT (SELECT count() FROM {db}.events), (SELECT count() FROM {db}.sessions), "
                    f"(SELECT count() FROM {db}.persons), (SELECT count() FROM {db}.person_distinct_ids)"
                )[0]
            )

        while time.monotonic() - started < timeout_s:
            try:
                lag = self.lag()
                now = counts()
            except Exception as exc:  # noqa: BLE001 - the broker or the projector is still coming back
                last = repr(exc)
                time.sleep(1)
                continue
            last = lag
            if now != previous:
                steady_since = time.monotonic()
            previous = now
            steady = time.monotonic() - steady_since
            if not any(lag.values()) and steady >= 3:
                return {"quiet": True, "seconds": round(time.monotonic() - started, 1)}
            if any(lag.values()) and steady >= stuck_after_s:
                break
            time.sleep(1)
        return {"quiet": False, "seconds": round(time.monotonic() - started, 1), "lag_left": last}

    def snapshot(self) -> Snapshot:
        db = self.settings.database
        # The tracked events only: the `$` rows of profile changes (type profile_change) are decided per batch, so
        # a run with faults may fold two changes of one property into one (ARCHITECTURE.md, "The outbound stream").
        tracked = f"{db}.events FINAL WHERE type != 'profile_change'"
        events = {m: int(n) for m, n in self.query(f"SELECT message_id, count() FROM {tracked} GROUP BY message_id")}
        raw_rows = int(self.query(f"SELECT count() FROM {db}.events WHERE type != 'profile_change'")[0][0])
        sessions = Counter(
            (s, int(e), int(p)) for s, e, p in self.query(f"SELECT session_id, event_count, pageview_count FROM {db}.sessions FINAL")
        )
        owner = dict(self.query(f"SELECT distinct_id, argMax(person_id, version) FROM {db}.person_distinct_ids GROUP BY distinct_id"))
        ids_of: dict[str, set[str]] = {}
        for distinct_id, person in owner.items():
            ids_of.setdefault(person, set()).add(distinct_id)
        persons = Counter(
            (tuple(sorted(ids_of.get(p, ()))), int(e), int(s), bool(i))
            for p, e, s, i in self.query(f"SELECT person_id, event_count, session_count, is_identified FROM {db}.persons FINAL")
        )
        return Snapshot(events, raw_rows, sessions, persons)

    def dead_letter(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in topic_values(self.settings, self.settings.topics.dead_letter.name)]


@dataclass
class Snapshot:
    events: dict[str, int]  # message_id → rows under FINAL
    raw_rows: int  # rows before FINAL (replays not merged yet)
    sessions: Counter  # (session_id, event_count, pageview_count)
    persons: Counter  # (sorted distinct ids, event_count, session_count, is_identified)


def topic_records(settings: FootfallSettings, topic: str, timeout_s: float = 60) -> list[tuple[int, int, int, bytes]]:
    """(partition, offset, append time in ms, value) of every event on `topic` (envelopes unpacked), for diagnostics."""
    from schemas.envelope import unpack

    records = read_topic(settings, topic, timeout_s)
    return [(r.partition(), r.offset(), r.timestamp()[1], value) for r in records for value in unpack(r.value(), r.headers())]


def missing_ranges(pipeline: Pipeline, ids: set[str]) -> dict[str, Any]:
    """Where acknowledged events that never reached `events` sit on the raw topic (partition: offset ranges, with
    append times), whether they reached `enriched`, and the processor group's committed offsets on raw."""
    settings = pipeline.settings
    enriched = {orjson.loads(v)["message_id"] for _, _, _, v in topic_records(settings, settings.topics.enriched.name)}

    def clock(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]

    ranges: dict[str, list] = {}
    raw = topic_records(settings, settings.topics.raw.name)
    for partition in range(settings.topics.raw.partitions):
        rows = sorted((o, ts, orjson.loads(v)["message_id"]) for p, o, ts, v in raw if p == partition)
        current: list | None = None
        for offset, ts, message_id in rows:
            gone = message_id in ids and message_id not in enriched
            if gone and current is None:
                current = [offset, offset, clock(ts), clock(ts)]
            elif gone:
                current[1], current[3] = offset, clock(ts)
            elif current is not None:
                ranges.setdefault(str(partition), []).append(current)
                current = None
        if current is not None:
            ranges.setdefault(str(partition), []).append(current)
    committed = {
        f"raw/{row.partition}": row.committed
        for row in consumer_lag(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}-processor", [settings.topics.raw.name])
    }
    return {"raw_ranges_never_enriched": ranges, "processor_committed": committed, "reached_enriched": len(ids & enriched)}


# -- the load ---------------------------------------------------------------------------------------------


def send(url: str, traffic: Traffic, rate: float) -> LoadReport:
    """One connection, batches in order: each device's events reach Kafka in the order of the model, whatever
    has to be retried (a retried batch is retried before the next one goes), as with one SDK per device."""
    return asyncio.run(
        run_load(url, WRITE_KEY, list(traffic.calls), rate=rate, batch_size=traffic.batch_size, concurrency=1, max_retries=60, timeout=30)
    )


# -- faults -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to break: each kind, at seeded moments of a load lasting about `load_s` seconds."""

    kinds: tuple[str, ...]  # "collector", "processor0", "processor1", "projector", "broker"; "join1": processor1 starts then

    @property
    def joining(self) -> tuple[str, ...]:
        return tuple(f"processor{kind.removeprefix('join')}" for kind in self.kinds if kind.startswith("join"))

    processors: int = 1
    store: str = "memory://"
    persons_partitioned: bool = False  # profiles folded by the person-changes owners (the clean run folds inline)

    def schedule(self, seed: int, load_s: float) -> list[FaultRecord]:
        rng = random.Random(f"faults-plan-{seed}-{','.join(self.kinds)}")
        kinds = list(self.kinds)
        rng.shuffle(kinds)
        # Spread over the load (not before 2 s, not after its end), a few seconds apart, in a seeded order.
        slot = (load_s - 2) / max(1, len(kinds))
        return [FaultRecord(kind, kind, round(2 + n * slot + rng.uniform(0, slot * 0.6), 1)) for n, kind in enumerate(kinds)]


class Injector(threading.Thread):
    """Applies the faults at their planned moments (or as soon as the one before is over)."""

    def __init__(self, pipeline: Pipeline, faults: list[FaultRecord], broker: LocalBroker | None, seed: int, t0: float):
        super().__init__(name="fault-injector", daemon=True)
        self.pipeline = pipeline
        self.faults = faults
        self.broker = broker
        self.rng = random.Random(f"faults-downtime-{seed}")
        self.t0 = t0
        self.error: BaseException | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def run(self) -> None:
        try:
            for fault in self.faults:
                time.sleep(max(0.0, fault.planned_s - (time.monotonic() - self.t0)))
                self.apply(fault)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def apply(self, fault: FaultRecord) -> None:
        down = round(self.rng.uniform(0.2, 3.0), 1)
        fault.at_s = self.now()
        fault.wall = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        if fault.kind == "broker":
            assert self.broker is not None
            self.broker.stop()
            fault.stopped_s = self.now()
            time.sleep(down)
            self.broker.start()  # same ports and state; waits for every partition's leader
            fault.back_s = self.now()
            return
        stages = {
            "collector": self.pipeline.collector,
            "projector": self.pipeline.projector,
            **{f"processor{n}": p for n, p in enumerate(self.pipeline.processors)},
        }
        if fault.kind.startswith("join"):  # no fault: one more worker joins the group (a rebalance, as in a scale-out)
            stages[f"processor{fault.kind.removeprefix('join')}"].start()
            fault.back_s = self.now()
            return
        stage = stages[fault.kind]
        stage.kill9()
        fault.stopped_s = self.now()
        time.sleep(down)
        stage.start()
        fault.back_s = self.now()


# -- expectations -------------------------------------------------------------------------------------------


def expected_sessions(traffic: Traffic) -> Counter:
    """The pure sessionizer over the valid calls in the order sent (each device's order is kept end to end),
    with the collector's own normalisation: what any run, with or without faults, must end with."""
    from ingest.normalize import Edge, normalize
    from schemas.events import RawEvent

    def as_received(call: dict) -> RawEvent:
        received = datetime.fromisoformat(call["sentAt"])  # so the corrected time is the model's own timestamp
        return RawEvent.model_validate_json(normalize(call, Edge(SOURCE_ID, received, None, None)).value)

    return Counter((s, u.event_count, u.pageview_count) for s, u in final_sessions(map(as_received, traffic.valid)).items())


def counter_diff(expected: Counter, found: Counter, limit: int = 5) -> dict[str, Any]:
    missing, extra = expected - found, found - expected
    return {
        "missing": len(list(missing.elements())),
        "extra": len(list(extra.elements())),
        "missing_examples": [list(k) for k in list(missing)[:limit]],
        "extra_examples": [list(k) for k in list(extra)[:limit]],
    }


@dataclass
class Outcome:
    """What one run under faults came to; `summary()` is its one line, `record()` its JSON line."""

    seed: int
    suite: str
    plan: dict[str, Any]
    faults: list[dict[str, Any]]
    exits: list[dict[str, Any]]
    sent: int
    acked: int
    rejected: int
    stored: int
    lost: list[str]
    duplicated: dict[str, int]
    unacknowledged_stored: int
    invented: list[str]
    sessions: dict[str, Any]
    persons: dict[str, Any]
    dead_letter: dict[str, Any]
    quiescence: dict[str, Any]  # did every consumer group get to lag 0 (else the lag left)
    load: dict[str, Any]
    run_dir: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.duplicated
            and not self.invented
            and self.sessions["equal"]
            and self.persons["equal"]
            and self.dead_letter["ok"]
            and self.quiescence["quiet"]
        )

    def summary(self) -> str:
        faults = ", ".join(f"{f['kind']}@{f['at_s']}s" for f in self.faults) or "none"
        return (
            f"[faults/{self.suite}] seed={self.seed} workers={self.plan['processors']} store={self.plan['store']} faults=[{faults}] "
            f"self-exits={len(self.exits)} acked={self.acked} rejected={self.rejected} stored={self.stored} lost={len(self.lost)} "
            f"duplicated={len(self.duplicated)} sessions={'=' if self.sessions['equal'] else '≠'} "
            f"persons={'=' if self.persons['equal'] else '≠'} dead-letter={'ok' if self.dead_letter['ok'] else 'NOT ok'} "
            f"lag0={'yes' if self.quiescence['quiet'] else 'NO ' + json.dumps(self.quiescence.get('lag_left'))} "
            f"in {self.seconds.get('total', 0):.0f}s"
        )

    def record(self) -> dict[str, Any]:
        body = asdict(self)
        body.update(
            lost=len(self.lost),
            lost_examples=self.lost[:20],
            duplicated=len(self.duplicated),
            duplicated_examples=dict(list(self.duplicated.items())[:20]),
            invented=len(self.invented),
            ok=self.ok,
        )
        for exit_ in body["exits"]:
            exit_.pop("log_tail", None)
        return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "git": _git_rev(), **body}


def _git_rev() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def append_result(outcome: Outcome, path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(json.dumps(outcome.record(), default=str) + "\n")


@contextmanager
def running(pipeline: Pipeline, later: tuple[str, ...] = ()) -> Iterator[Pipeline]:
    try:
        pipeline.start(later)
        yield pipeline
    finally:
        pipeline.shutdown()


def scenario_settings(settings: FootfallSettings, suffix: str, store: str) -> FootfallSettings:
    run_id = uuid.uuid4().hex[:6]
    return settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}-{suffix}-{run_id}",
            "database": f"{settings.database}_{suffix}_{run_id}",
            "processor_store": store,
        }
    )


def clickhouse_server(settings: FootfallSettings) -> str | None:
    """The test session's ClickHouse when it is a server every process can share, else None: then each
    projector gets an embedded engine (chdb) of its own, which only it may open."""
    url = settings.clickhouse_dsn
    return None if url.startswith("chdb:") else url
