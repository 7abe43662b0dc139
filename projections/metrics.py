"""Prometheus metrics of the projector (served on its read API's /metrics, FOOTFALL_READ_API_PORT)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

ROWS_WRITTEN = Counter("footfall_projector_rows_written_total", "Rows ClickHouse accepted, per table", ["table"])
BATCH_MESSAGES = Histogram(
    "footfall_projector_batch_messages",
    "Kafka messages per written batch",
    buckets=(1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000),
)
INSERT_SECONDS = Histogram(
    "footfall_projector_insert_seconds",
    "Time of one accepted insert, retries included, per table",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FRESHNESS_SECONDS = Histogram(
    "footfall_projector_freshness_seconds",
    "End-to-end latency of an event: from the collector's received_at to its row accepted by ClickHouse",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 21600),
)
REFUSED_WRITES = Counter("footfall_projector_refused_writes_total", "Writes ClickHouse refused (each one retried)")
PROFILE_CHANGES = Counter("footfall_projector_profile_changes_total", "Profile changes published on the outbound stream (profile-changes)")
COMMIT_FAILURES = Counter("footfall_projector_commit_failures_total", "Offset commits refused by the group (rebalance)")


def observe_freshness(received_at_ms: Iterable[int], now: float | None = None) -> None:
    """One observation per event row, against the moment its insert returned.

    A batch holds up to FOOTFALL_BATCH_MAX_ROWS events, and Histogram.observe (a lock and a bucket scan per
    call) cost about as much as decoding a small event, so the batch is bucketed here and added in one step per
    bucket, with the histogram's own bounds and storage (prometheus_client keeps per-bucket counts and a sum)."""
    now_ms = (time.time() if now is None else now) * 1000
    seconds = [max(0.0, (now_ms - received) / 1000) for received in received_at_ms]
    bounds, buckets, total = (
        getattr(FRESHNESS_SECONDS, "_upper_bounds", None),
        getattr(FRESHNESS_SECONDS, "_buckets", None),
        getattr(FRESHNESS_SECONDS, "_sum", None),
    )
    if bounds is None or buckets is None or total is None:  # another prometheus_client layout: one call per event
        for value in seconds:
            FRESHNESS_SECONDS.observe(value)
        return
    for index, count in Tally(bisect_left(bounds, value) for value in seconds).items():
        buckets[index].inc(count)
    total.inc(sum(seconds))


# The segment evaluator (`footfall segments`, its own /metrics on FOOTFALL_SEGMENTS_METRICS_PORT).
SEGMENT_EVALUATION_SECONDS = Histogram(
    "footfall_segment_evaluation_seconds",
    "One segment's evaluation: its query and its transitions published",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SEGMENT_TRANSITIONS = Counter("footfall_segment_transitions_total", "Segment enters and exits published on profile-changes", ["kind"])
SEGMENT_FAILURES = Counter("footfall_segment_evaluation_failures_total", "Segment evaluations that failed (the segment's status says why)")
STAGE_RULE_MOVES = Counter("footfall_stage_rule_moves_total", "Stage rule moves the segment evaluator published on user-commands")
STAGE_RULE_FAILURES = Counter(
    "footfall_stage_rule_failures_total", "Stage rule evaluations in ClickHouse that failed (logged; retried next time)"
)
