"""Start real footfall stages for integration tests: the CLI's own processes, on the test's settings, under the
project's one supervisor (footfall/supervisor.py). The topic readers live in footfall/topics.py (the benchmarks
use them too) and are re-exported here for the tests."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from footfall.supervisor import NEVER, Child, RestartPolicy, Supervisor, footfall_command, settings_env
from footfall.topics import read_topic, topic_message_ids, topic_values
from processors.app import EXIT_AGENT_FAILED
from processors.sessionizer import DeviceState, SessionizerConfig, assign
from projections.clickhouse import connect
from projections.projector import Projector
from schemas.config import FootfallSettings
from schemas.events import RawEvent
from schemas.sessions import SessionUpdate
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
            if isinstance(watched, subprocess.Popen | Child) and watched.poll() is not None:
                raise AssertionError(f"{' '.join(map(str, watched.args))} exited with {watched.returncode} while waiting for {what}")
            if getattr(watched, "failure", None):
                raise AssertionError(f"the projector failed while waiting for {what}") from watched.failure[0]
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


@contextlib.contextmanager
def footfall_process(stage: str, settings: FootfallSettings, log_dir: Path, **env: str) -> Iterator[Child]:
    """A `footfall <stage>` process that is not restarted; logs to log_dir/<stage>.log."""
    child = Child(stage, footfall_command(stage), env=settings_env(settings, **env), log_dir=log_dir).start()
    try:
        yield child
    finally:
        child.stop(20)


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
def collector(settings: FootfallSettings, log_dir: Path, workers: int = 1, **env: str) -> Iterator[str]:
    """A `footfall collector` process; yields its base URL once /readyz says Kafka is reachable."""
    settings = settings.model_copy(update={"collector_port": free_port()})
    url = f"http://127.0.0.1:{settings.collector_port}"
    extra = {"FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=test-source", "FOOTFALL_COLLECTOR_WORKERS": str(workers), **env}
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


# A processor exits with EXIT_AGENT_FAILED rather than acknowledge what it did not finish (processors/app.py);
# systemd's Restart=on-failure, Kubernetes or `footfall run` start it again. Tests do the same, and only for that
# exit: a kill -9 the test makes, or any other exit, stays visible through `poll()`.
RESTART_A_FAILED_WORKER = RestartPolicy(exit_codes=frozenset({EXIT_AGENT_FAILED}), max_restarts=5)


@contextlib.contextmanager
def processor(settings: FootfallSettings, log_dir: Path, restart_on_failure: bool = True) -> Iterator[Child]:
    """A processor worker; by default restarted when it stops itself on a failure."""
    policy = RESTART_A_FAILED_WORKER if restart_on_failure else NEVER
    with Supervisor() as supervisor:
        yield supervisor.start(
            Child("processor", footfall_command("processor"), env=settings_env(settings), log_dir=log_dir, policy=policy)
        )


class WatchedProjector(Projector):
    """The projector of a test: `failure` holds what stopped its thread (wait_until(watch=...) looks there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure: list[BaseException] = []


@contextlib.contextmanager
def projector(settings: FootfallSettings) -> Iterator[Projector]:
    """The projector in this process: with the embedded engine, the test process owns the chdb path."""
    worker = WatchedProjector(settings, connect(settings.clickhouse_dsn))
    failure = worker.failure

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


__all__ = [
    "WRITE_KEY",
    "collector",
    "final_sessions",
    "footfall_process",
    "processor",
    "projector",
    "read_topic",
    "tail",
    "topic_message_ids",
    "topic_values",
    "wait_until",
]
