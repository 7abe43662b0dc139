"""The management API's Prometheus metrics (`GET /metrics`, like every footfall component).

Requests by route template, method and status class, with latency, come from prometheus-fastapi-instrumentator;
the API's own work adds commands published per topic and how `?wait=true` ended (readable, or the
timeout), with the write-to-readable time. Each app has its own registry, so several apps in one process (the
tests) never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.applications import Starlette

READABLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            "footfall_api_commands_published_total",
            "Records the API published (acknowledged by Kafka), by topic",
            ["topic"],
            registry=self.registry,
        )
        self.waits = Counter(
            "footfall_api_waits_total",
            "?wait=true requests, by outcome (readable, timed_out)",
            ["outcome"],
            registry=self.registry,
        )
        self.readable_seconds = Histogram(
            "footfall_api_write_to_readable_seconds",
            "From a write's acknowledgement to the change being readable (?wait=true)",
            buckets=READABLE_BUCKETS,
            registry=self.registry,
        )

    def instrument(self, app: Starlette) -> None:
        """Request metrics on every route, and the `/metrics` route itself (left out of the OpenAPI document)."""
        instrumentator = Instrumentator(should_group_status_codes=True, excluded_handlers=["/metrics"], registry=self.registry)
        instrumentator.instrument(app, metric_namespace="footfall", metric_subsystem="api")
        instrumentator.expose(app, endpoint="/metrics", include_in_schema=False)

    def count_published(self, topics: list[str]) -> None:
        for topic in topics:
            self.published.labels(topic.rsplit(".", 1)[-1]).inc()

    def observe_wait(self, readable: bool, seconds: float) -> None:
        self.waits.labels("readable" if readable else "timed_out").inc()
        if readable:
            self.readable_seconds.observe(seconds)
