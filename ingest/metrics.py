"""Prometheus metrics of the collector. With several worker processes, `PROMETHEUS_MULTIPROC_DIR` is set
by `footfall collector` (before the workers import this module) and /metrics aggregates every worker."""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("footfall_collector_requests_total", "HTTP requests by route and status", ["route", "status"])
EVENTS_ACCEPTED = Counter("footfall_collector_events_accepted_total", "Events durably written to the raw topic", ["type"])
EVENTS_REJECTED = Counter(
    "footfall_collector_events_rejected_total", "Events refused, by the top-level field at fault (the reason's kind)", ["field"]
)
PRODUCE_SECONDS = Histogram(
    "footfall_collector_produce_seconds",
    "Time from produce to Kafka's acknowledgement of a whole request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENVELOPE_EVENTS = Histogram(
    "footfall_collector_envelope_events",
    "Events per envelope written to the raw topic (requests of one flush window share envelopes)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
QUEUE_DEPTH = Gauge("footfall_collector_producer_queue_depth", "Records waiting in the producer's queue", multiprocess_mode="livesum")


@functools.cache
def child(metric: Any, *label_values: str | int) -> Any:
    """`metric.labels(...)`, made once: labels() takes a lock and builds a key on every call."""
    return metric.labels(*label_values)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class RequestMetrics:
    """Counts every answer by route template (so /v1/projects/{writeKey}/settings is one series) and status."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            child(REQUESTS, getattr(scope.get("route"), "path", "unmatched"), status or 500).inc()
