"""Fixtures of the integration tests (the session's broker and ClickHouse are in tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest

from footfall.topics import ensure_topics
from schemas.config import FootfallSettings


@pytest.fixture
def collector_settings(kafka_bootstrap) -> FootfallSettings:
    """Settings with their own topics (no ClickHouse: the collector never touches it)."""
    settings = FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"test-collector-{uuid.uuid4().hex[:10]}", partitions=3
    )
    ensure_topics(kafka_bootstrap, settings.topics.all())
    return settings
