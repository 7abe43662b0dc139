"""Prometheus metrics of the stream processors (served on FOOTFALL_PROCESSOR_METRICS_PORT)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
_exit_marker: Path | None = None


def record_start(state_dir: Path) -> str | None:
    """Count this start under the way the previous run on `state_dir` ended, and mark this run as running.

    A process cannot count its own death (nothing scrapes it afterwards), so each run leaves its reason in
    `state_dir/last-exit` and its successor counts it. Returns that reason (None on a first start)."""
    global _exit_marker
    _exit_marker = state_dir / "last-exit"
    previous = _exit_marker.read_text().strip() if _exit_marker.exists() else None
    reason = previous_run_ending(previous)
    if reason is not None:
        RESTARTS.labels(reason=reason).inc()
    _exit_marker.write_text(_RUNNING)
    return reason


def previous_run_ending(marker: str | None) -> str | None:
    """A run that never wrote how it ended was killed; no marker at all is a first start."""
    if marker is None:
        return None
    return "killed" if marker in ("", _RUNNING) else marker


def record_exit(reason: str) -> None:
    """Leave `reason` for the next run to count (see record_start); a no-op before record_start."""
    if _exit_marker is not None:
        _exit_marker.write_text(reason)


def set_consumer_lag(positions: Mapping[Any, int], ends: Mapping[Any, int]) -> None:
    """Replace the lag gauge with the partitions owned now (a revoked partition's series disappears)."""
    CONSUMER_LAG.clear()
    for tp, position in positions.items():
        CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, ends.get(tp, position) - position))
