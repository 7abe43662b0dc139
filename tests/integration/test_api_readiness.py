"""`/readyz` of `footfall api` holds traffic back until the topics the API keeps in memory are read: before
that, writes that check against them (property definitions, stages, lists...) answer 503. A broker that cannot
be reached when the API starts is waited for, not a reason to stay unready for good."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from tests.api_support import ADMIN_KEY
from tests.infra import free_port
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def reader_of(settings, clickhouse_client) -> ClickHouseReader:
    migrate(clickhouse_client, settings.database)
    return ClickHouseReader(connect(settings.clickhouse_dsn), settings.database)


def test_not_ready_while_kafka_is_away_and_every_catalog_is_named(settings, clickhouse_client):
    away = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(away, ADMIN_KEY, reader_of(away, clickhouse_client))) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert set(answer.json()["loading"]) >= {"definitions", "stages", "lists", "segments", "object_types", "configs"}
        created = client.post("/api/v1/users", json={"email": "a@example.com"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert created.status_code == 503 and created.headers["retry-after"] == "1"


def test_ready_once_every_catalog_was_read(settings, clickhouse_client):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    with TestClient(create_app(settings, ADMIN_KEY, reader_of(settings, clickhouse_client))) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 60, what="/readyz")
        assert client.get("/readyz").json() == {"status": "ready"}
