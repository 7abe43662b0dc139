"""Start, watch and restart footfall's child processes: the one supervisor that `footfall run`, the tests and
the benchmarks use.

A stage that stops on an error has committed nothing it did not finish (a processor exits with 70 rather
than acknowledge what it did not handle), so starting it again is always safe; a service manager
(systemd's Restart=on-failure, Kubernetes) does this in production. A `Child` is one stage and its
successors, each incarnation logging to a file of its own; its `RestartPolicy` says which exits are
restarted, how soon and how often. A `Supervisor` watches its children from one thread and stops them in
the reverse order of their start (collector first, projector last: each drains what it was given).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from schemas.config import FootfallSettings


@dataclass(frozen=True)
class RestartPolicy:
    """Which exits start the child again (`exit_codes` None: any exit nobody asked for), at most `max_restarts`
    within `window_s` (None: ever), and never sooner than `min_uptime_s` after the last start (a stage failing
    at start, its broker away, is not restarted in a tight loop)."""

    exit_codes: frozenset[int] | None = None
    max_restarts: int | None = 5
    window_s: float | None = None
    min_uptime_s: float = 0.0


NEVER = RestartPolicy(exit_codes=frozenset(), max_restarts=0)


def settings_env(settings: FootfallSettings, **extra: str) -> dict[str, str]:
    """The environment that makes a `footfall` child use exactly these settings (the parent's FOOTFALL_* dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
            "FOOTFALL_PARTITIONS": str(settings.partitions),
            "FOOTFALL_DATABASE": settings.database,
            "FOOTFALL_DATA_DIR": str(settings.data_dir),
            "FOOTFALL_COLLECTOR_PORT": str(settings.collector_port),
            "FOOTFALL_READ_API_PORT": str(settings.read_api_port),
            "FOOTFALL_PROCESSOR_METRICS_PORT": "0",
            "FOOTFALL_WEBHOOKS_METRICS_PORT": "0",
            "FOOTFALL_SEGMENTS_METRICS_PORT": "0",
            "FOOTFALL_PROCESSOR_STORE": settings.processor_store,
            "FOOTFALL_SESSION_GAP_SECONDS": str(settings.session_gap_seconds),
            "FOOTFALL_ALLOWED_LATENESS_SECONDS": str(settings.allowed_lateness_seconds),
            "FOOTFALL_SESSION_TICK_SECONDS": str(settings.session_tick_seconds),
            **extra,
        }
    )
    if settings.clickhouse_url:
        env["CLICKHOUSE_URL"] = settings.clickhouse_url
    if settings.persons_partitioned:
        env["FOOTFALL_PERSONS_PARTITIONED"] = "true"
    return env


def footfall_command(stage: str) -> list[str]:
    return [sys.executable, "-m", "footfall", stage]


class Child:
    """One child process and its successors. `poll()` is None while it runs or is about to be restarted, and
    its exit code once it stopped for good; `exits` records every exit nobody asked for."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        policy: RestartPolicy = NEVER,
        cwd: Path | None = None,
        own_session: bool = False,
    ) -> None:
        self.name, self.command, self.env, self.log_dir, self.policy = name, args, env, log_dir, policy
        self.cwd, self.own_session = cwd, own_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.restarts = 0
        self.exits: list[dict[str, Any]] = []
        self.held = False  # down on purpose (stopped, killed by a test, a fault in progress): never restarted
        self._restarted_at: list[float] = []
        self._started_at = 0.0
        self._lock = threading.RLock()

    @property
    def log_path(self) -> Path | None:
        """The log of the current incarnation (None: output discarded)."""
        return self.log_of(self.incarnation)

    def log_of(self, incarnation: int) -> Path | None:
        if self.log_dir is None:
            return None
        return self.log_dir / (f"{self.name}-{incarnation}.log" if incarnation > 1 else f"{self.name}.log")

    def start(self) -> Child:
        with self._lock:
            self.incarnation += 1
            self.held = False
            if self.log_path is None:
                self.proc = self._spawn(subprocess.DEVNULL)
            else:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "wb") as log:  # the child has its own copy of the descriptor
                    self.proc = self._spawn(log)
            self._started_at = time.monotonic()
        return self

    def _spawn(self, log: IO[bytes] | int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session
        )

    # -- watching ------------------------------------------------------------------------------------------

    def _may_restart(self, code: int, now: float) -> bool:
        policy = self.policy
        if self.held or (policy.exit_codes is not None and code not in policy.exit_codes):
            return False
        if policy.max_restarts is None:
            return True
        recent = [t for t in self._restarted_at if policy.window_s is None or now - t < policy.window_s]
        return len(recent) < policy.max_restarts

    def check(self) -> bool:
        """Restart the child if it exited and its policy says so; True when it did."""
        with self._lock:
            if self.proc is None or (code := self.proc.poll()) is None:
                return False
            now = time.monotonic()
            if not self._may_restart(code, now) or now - self._started_at < self.policy.min_uptime_s:
                return False
            self.exits.append({"code": code, "incarnation": self.incarnation, "at": now, "after_s": round(now - self._started_at, 1)})
            self.restarts += 1
            self._restarted_at.append(now)
            self.start()
            return True

    def poll(self) -> int | None:
        with self._lock:
            if self.proc is None:
                return None
            code = self.proc.poll()
            if code is None or self._may_restart(code, time.monotonic()):
                return None
            return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def args(self) -> list[str]:
        return self.command

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- stopping ------------------------------------------------------------------------------------------

    def kill9(self) -> None:
        """kill -9, and no restart until started again."""
        with self._lock:
            self.held = True
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; no restart until started again."""
        with self._lock:
            self.held = True
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Supervisor:
    """Children watched by one thread; `stop()` stops them all, the last started first."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.children: list[Child] = []
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, child: Child) -> Child:
        """Watch a child, from the start it is given (now or later)."""
        self.children.append(child)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._thread.start()
        return child

    def start(self, child: Child) -> Child:
        return self.watch(child.start())

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval_s):
            for child in list(self.children):
                child.check()

    def given_up(self) -> list[Child]:
        """Children that exited for good although nobody asked them to."""
        return [c for c in self.children if not c.held and c.poll() is not None]

    def stop(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        for child in reversed(self.children):
            child.stop(timeout_s)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
