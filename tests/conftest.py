"""Fixtures: a real Kafka broker and a real ClickHouse per test session; isolated topics and database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from projections.clickhouse import connect, migrate
from schemas.config import FootfallSettings
from tests.infra import LocalBroker, clickhouse, kafka_broker

# Property tests check properties, not speed: on a shared 2-core machine, generation and run times are noise.
hypothesis_settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("shared-machine")


@pytest.fixture(scope="session")
def _kafka(tmp_path_factory) -> Iterator[tuple[str, LocalBroker | None]]:
    with kafka_broker(tmp_path_factory.mktemp("infra")) as found:
        yield found


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka) -> str:
    return _kafka[0]


@pytest.fixture(scope="session")
def local_broker(_kafka) -> LocalBroker:
    """The project's own broker, for tests that stop and start it (skipped against an external one)."""
    if _kafka[1] is None:
        pytest.skip("needs the broker from deploy/kafka.sh (an external broker cannot be restarted here)")
    return _kafka[1]


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory) -> Iterator[str]:
    with clickhouse(tmp_path_factory.mktemp("clickhouse")) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_dsn):
    return connect(clickhouse_dsn)


@pytest.fixture
def database(clickhouse_client) -> Iterator[str]:
    """A freshly migrated ClickHouse database of its own (no Kafka needed), dropped afterwards."""
    name = f"db_{uuid.uuid4().hex[:10]}"
    migrate(clickhouse_client, name)
    yield name
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def settings(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path) -> Iterator[FootfallSettings]:
    """Settings for one isolated pipeline: its own topics, consumer groups and database."""
    run_id = uuid.uuid4().hex[:10]
    settings = FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        clickhouse_url=clickhouse_dsn,
        topic_prefix=f"test-{run_id}",
        database=f"test_{run_id}",
        data_dir=tmp_path / "data",
        partitions=3,
        batch_max_seconds=0.3,
    )
    migrate(clickhouse_client, settings.database)
    yield settings
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")
