"""Start real footfall stages for integration tests: the CLI's own processes, on the test's settings."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

from processors.app import EXIT_AGENT_FAILED
from processors.sessionizer import DeviceState, SessionizerConfig, assign
from projections.clickhouse import connect
from projections.projector import Projector
from schemas.config import FootfallSettings
from schemas.events import RawEvent
from schemas.sessions import SessionUpdate
from tests.conftest import settings_env
from tests.infra import free_port

T = TypeVar("T")
WRITE_KEY = "test-write-key"


def wait_until(
    probe: Callable[[], T],
    timeout_s: float = 60,
    interval_s: float = 0.25,
    what: str = "condition",
    watch: tuple = (),
) -> T:
    """Poll `probe` until it returns something truthy; fail fast if a watched process died."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        for watched in watch:
            if isinstance(watched, subprocess.Popen | SupervisedProcess) and watched.poll() is not None:
                raise AssertionError(f"{' '.join(map(str, watched.args))} exited with {watched.returncode} while waiting for {what}")
            if getattr(watched, "failure", None):
                raise AssertionError(f"the projector failed while waiting for {what}") from watched.failure[0]
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


@contextlib.contextmanager
def footfall_process(stage: str, settings: FootfallSettings, log_dir: Path, **env: str) -> Iterator[subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{stage}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "footfall", stage], env=settings_env(settings, **env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def final_sessions(events: Iterable[RawEvent]) -> dict[str, SessionUpdate]:
    """The pure sessionizer over `events` in the order given (each device's own order is what counts): every
    session's last update, absorbed ones gone. What any run of the pipeline over the same events ends with."""
    states: dict[str, DeviceState] = {}
    latest: dict[str, SessionUpdate] = {}
    for event in events:
        result = assign(states.get(event.device_key), event, event.timestamp, SessionizerConfig())
        states[event.device_key] = result.state
        for update in result.updates:
            if update.status == "absorbed":
                latest.pop(update.session_id, None)
            else:
                latest[update.session_id] = update
    return latest


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@contextlib.contextmanager
def collector(settings: FootfallSettings, log_dir: Path, workers: int = 1) -> Iterator[str]:
    """A `footfall collector` process; yields its base URL once /readyz says Kafka is reachable."""
    settings = settings.model_copy(update={"collector_port": free_port()})
    url = f"http://127.0.0.1:{settings.collector_port}"
    extra = {"FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=test-source", "FOOTFALL_COLLECTOR_WORKERS": str(workers)}
    with footfall_process("collector", settings, log_dir, **extra) as proc:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"collector exited:\n{tail(log_dir / 'collector.log')}")
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, what="collector /readyz")
        yield url


class SupervisedProcess:
    """A `footfall <stage>` process that a service manager restarts when it stops itself on a failure.

    A processor exits with EXIT_AGENT_FAILED rather than acknowledge what it did not finish (processors/app.py);
    systemd's Restart=on-failure, Kubernetes or `footfall run` start it again. Tests do the same, and only for
    that exit: a kill -9 the test makes, or any other exit, stays visible through `poll()`."""

    def __init__(self, stage: str, settings: FootfallSettings, log_dir: Path, max_restarts: int = 5):
        self.stage, self.settings, self.log_dir, self.max_restarts = stage, settings, log_dir, max_restarts
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._proc = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name=f"supervise-{stage}", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        suffix = f"-{self.restarts + 1}" if self.restarts else ""
        with open(self.log_dir / f"{self.stage}{suffix}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "footfall", self.stage], env=settings_env(self.settings),
                                    stdout=log, stderr=subprocess.STDOUT)

    def _watch(self) -> None:
        while not self._stopping:
            time.sleep(0.2)
            with self._lock:
                if self._stopping or self._proc.poll() != EXIT_AGENT_FAILED or self.restarts >= self.max_restarts:
                    continue
                self.restarts += 1
                self._proc = self._spawn()

    @property
    def args(self) -> list:
        return self._proc.args

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def poll(self) -> int | None:
        """None while running or about to be restarted; the exit code once it stopped for good."""
        with self._lock:
            code = self._proc.poll()
            restarting = code == EXIT_AGENT_FAILED and not self._stopping and self.restarts < self.max_restarts
            return None if restarting else code

    def kill9(self) -> None:
        """kill -9, for good: no restart."""
        with self._lock:
            self._stopping = True
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(20)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        self._watcher.join(5)


@contextlib.contextmanager
def processor(settings: FootfallSettings, log_dir: Path, restart_on_failure: bool = True) -> Iterator[SupervisedProcess | subprocess.Popen]:
    """A processor worker; by default restarted when it stops itself on a failure (SupervisedProcess)."""
    if not restart_on_failure:
        with footfall_process("processor", settings, log_dir) as proc:
            yield proc
        return
    worker = SupervisedProcess("processor", settings, log_dir)
    try:
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def projector(settings: FootfallSettings) -> Iterator[Projector]:
    """The projector in this process: with the embedded engine, the test process owns the chdb path."""
    worker = Projector(settings, connect(settings.clickhouse_dsn))
    failure: list[BaseException] = []
    worker.failure = failure  # type: ignore[attr-defined] - wait_until(watch=...) looks here
    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="test-projector", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    if failure:
        raise failure[0]


def read_topic(settings: FootfallSettings, topic: str, timeout_s: float = 30, complete: bool = False) -> list:
    """Every record on `topic` from the beginning to the end offsets taken now, as confluent-kafka messages
    (partition, offset, timestamp and raw value: poison included). With `complete`, failing to reach the end
    in time is an error; otherwise (diagnostics) whatever was read comes back."""
    from confluent_kafka import Consumer, TopicPartition

    from projections.replay import end_offsets

    ends = end_offsets(settings, [topic])  # only partitions that hold something
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"diagnostic-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while ends and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None or message.error():
                continue
            position = (message.topic(), message.partition())
            if position in ends and message.offset() < ends[position]:
                records.append(message)
            if message.offset() + 1 >= ends.get(position, 0):
                ends.pop(position, None)
    finally:
        consumer.close()
    if complete and ends:
        raise AssertionError(f"{topic}: could not read to the end of {sorted(ends)} within {timeout_s}s")
    return records


def topic_message_ids(settings: FootfallSettings, topic: str) -> list[str]:
    """Every message id on `topic`, from the beginning (a diagnostic: where did a missing event stop?)."""
    import orjson

    from schemas.envelope import EnvelopeError, unpack

    ids = []
    for record in read_topic(settings, topic):
        with contextlib.suppress(EnvelopeError):
            for value in unpack(record.value(), record.headers()):
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    body = orjson.loads(value)
                    ids.append(body.get("message_id") or body.get("messageId"))
    return ids


def topic_values(settings: FootfallSettings, topic: str, timeout_s: float = 30) -> list[bytes]:
    """Every message value on `topic`, from the beginning to the end offsets taken now (e.g. the dead-letter topic)."""
    return [record.value() for record in read_topic(settings, topic, timeout_s, complete=True)]
