"""Prometheus metrics of the collector. With several worker processes, `PROMETHEUS_MULTIPROC_DIR` is set
by `footfall collector` and /metrics aggregates every worker."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import REGISTRY

REQUESTS = Counter("footfall_collector_requests_total", "HTTP requests by route and status", ["route", "status"])
EVENTS_ACCEPTED = Counter("footfall_collector_events_accepted_total", "Events durably written to the raw topic", ["type"])
EVENTS_REJECTED = Counter("footfall_collector_events_rejected_total", "Events refused, by the field at fault", ["field"])
PRODUCE_SECONDS = Histogram(
    "footfall_collector_produce_seconds",
    "Time from produce to Kafka's acknowledgement of a whole request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge(
    "footfall_collector_producer_queue_depth", "Records waiting in the producer's queue", multiprocess_mode="livesum"
)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
