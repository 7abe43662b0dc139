"""Shared by the collector's integration tests (no tests here): the app with its lifespan, and reading back
everything Kafka acknowledged. Their isolated topics are the `collector_settings` fixture (tests/integration/conftest.py)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ingest.app import create_app
from ingest.config import CollectorConfig
from schemas.config import FootfallSettings

WRITE_KEY = "wk-web"
NO_TESTCLIENT_WARNING = pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")


class Message(NamedTuple):
    key: str | None
    value: dict[str, Any]
    partition: int


@contextlib.contextmanager
def running_collector(settings: FootfallSettings, tmp_path: Path, sources: list[dict] | None = None, **config: Any) -> Iterator[Any]:
    """The real app, lifespan and Kafka writer included, behind Starlette's TestClient."""
    from starlette.testclient import TestClient  # imported here, where NO_TESTCLIENT_WARNING applies
    path = tmp_path / f"sources-{uuid.uuid4().hex[:6]}.json"
    path.write_bytes(orjson.dumps(sources or [{"id": "web", "write_key": WRITE_KEY}]))
    app = create_app(settings, CollectorConfig(sources_file=path, **config))
    with TestClient(app) as client:
        yield client


def _end_offsets(consumer: Consumer, topic: str, partitions, timeout_s: float = 30) -> int:
    """The sum of the partitions' end offsets, asked again while a restarted broker re-elects leaders."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_all(settings: FootfallSettings, topic: str, timeout_s: float = 20) -> list[Message]:
    """Every message Kafka holds on `topic` (up to its high watermarks when this is called)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        expected = _end_offsets(consumer, topic, partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.2):
                if message.error() is None:
                    key = message.key().decode() if message.key() is not None else None
                    messages.append(Message(key, orjson.loads(message.value()), message.partition()))
        assert len(messages) == expected, f"read {len(messages)} of {expected} messages from {topic}"
        return messages
    finally:
        consumer.close()


def raw_events(settings: FootfallSettings) -> list[Message]:
    return read_all(settings, settings.topics.raw.name)


def bad_rows(settings: FootfallSettings) -> list[Message]:
    return read_all(settings, settings.topics.dead_letter.name)
