"""Prometheus metrics of the stream processors (served on FOOTFALL_PROCESSOR_METRICS_PORT)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

DUPLICATES = Counter("footfall_processor_duplicate_events_total", "Events whose messageId a device had already sent")
LATE_EVENTS = Counter("footfall_processor_late_events_total", "Events older than the watermark minus the allowed lateness")
SESSIONS_ENDED = Counter("footfall_processor_sessions_ended_total", "Sessions closed by the watermark")
IDENTITY_WARNINGS = Counter("footfall_processor_identity_warnings_total", "Identity commands refused in part", ["field"])
POISON_MESSAGES = Counter("footfall_processor_poison_messages_total", "Unreadable messages sent to the dead-letter topic", ["schema"])
CONSUMER_LAG = Gauge(
    "footfall_processor_consumer_lag", "Records waiting behind this worker's position, per owned partition", ["topic", "partition"]
)
RESTARTS = Counter(
    "footfall_processor_restarts_total",
    "Worker starts that follow an earlier run on the same state directory, by how that run ended: killed (no clean "
    "stop: kill -9, out of memory, node lost), stall, continuity, agent-failed, send-failed, stopped (a clean stop)",
    ["reason"],
)

_RUNNING = "running"
_marker: Path | None = None
_history: dict[str, int] = {}


def record_start(state_dir: Path) -> str | None:
    """Count this start under the way the previous run on `state_dir` ended, and mark this run as running.

    A process cannot count its own death (nothing scrapes it afterwards), so each run leaves its reason in
    `state_dir/last-exit` and its successor counts it. The file also keeps the counts so far, so the counter
    keeps growing across restarts instead of starting again at 0 or 1 (which Prometheus' increase() would
    not see as a change). Returns that reason (None on a first start)."""
    global _marker, _history
    _marker = state_dir / "last-exit"
    try:
        saved = orjson.loads(_marker.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        saved = None if not _marker.exists() else {"state": _RUNNING}
    _history = dict(saved.get("restarts", {})) if saved else {}
    reason = previous_run_ending(saved.get("state") if saved else None)
    if reason is not None:
        _history[reason] = _history.get(reason, 0) + 1
    for cause, count in _history.items():
        RESTARTS.labels(reason=cause).inc(count)
    _write(_RUNNING)
    return reason


def previous_run_ending(state: str | None) -> str | None:
    """A run that never wrote how it ended was killed; no marker at all is a first start."""
    if state is None:
        return None
    return "killed" if state in ("", _RUNNING) else state


def record_exit(reason: str) -> None:
    """Leave `reason` for the next run to count (see record_start); a no-op before record_start."""
    if _marker is not None:
        _write(reason)


def _write(state: str) -> None:
    _marker.write_bytes(orjson.dumps({"state": state, "restarts": _history}))


def set_consumer_lag(positions: Mapping[Any, int], ends: Mapping[Any, int]) -> None:
    """Replace the lag gauge with the partitions owned now (a revoked partition's series disappears)."""
    CONSUMER_LAG.clear()
    for tp, position in positions.items():
        CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, ends.get(tp, position) - position))
