"""A whole pipeline plus the management API for the API's integration tests: collector, processor, projector
(in this process: it owns the embedded engine) and the API app on a TestClient, reading ClickHouse directly."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.app import ApiConfig, create_app
from api.commands import CommandBus
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from schemas.config import FootfallSettings
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

ADMIN_KEY = "test-admin-key-" + "x" * 20


@dataclass
class Stack:
    settings: FootfallSettings
    api: TestClient
    collector_url: str
    client: object  # clickhouse-connect
    projector: object
    worker: object

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def track(self, path: str, body: dict) -> None:
        response = httpx.post(f"{self.collector_url}{path}", json=body, auth=(WRITE_KEY, ""), timeout=10)
        assert response.status_code == 200, response.text

    def query(self, sql: str, **parameters) -> list[tuple]:
        return self.client.query(sql.replace("{db}", self.settings.database), parameters=parameters).result_rows

    def wait(self, probe, what: str, timeout_s: float = 90):
        return wait_until(probe, timeout_s, what=what, watch=(self.worker, self.projector))


def wait_ready(client: TestClient, watch: tuple = ()) -> None:
    """As a load balancer would: use the API once /readyz says it has read the topics it keeps in memory (writes
    that check against them answer 503 until then, and loading is slow on a loaded machine)."""
    wait_until(lambda: client.get("/readyz").status_code == 200, 120, what="the API's /readyz", watch=watch)


def stack_settings(kafka_bootstrap: str, clickhouse_dsn: str, data_dir: Path) -> FootfallSettings:
    run_id = uuid.uuid4().hex[:10]
    return FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        clickhouse_url=clickhouse_dsn,
        topic_prefix=f"test-{run_id}",
        database=f"test_{run_id}",
        data_dir=data_dir,
        partitions=3,
        batch_max_seconds=0.3,
    )


@contextlib.contextmanager
def api_stack(settings: FootfallSettings, clickhouse_client, log_dir: Path) -> Iterator[Stack]:
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    migrate(clickhouse_client, settings.database)
    bus = CommandBus(settings.kafka_bootstrap_servers)
    reader = ClickHouseReader(connect(settings.clickhouse_dsn), settings.database)
    app = create_app(settings, ADMIN_KEY, reader, bus=bus, config=ApiConfig(wait_timeout_s=60))
    try:
        with (
            collector(settings, log_dir) as url,
            processor(settings, log_dir) as worker,
            projector(settings) as live,
            TestClient(app) as client,
        ):
            wait_ready(client, watch=(worker, live))
            yield Stack(settings, client, url, clickhouse_client, live, worker)
    finally:
        bus.close()
