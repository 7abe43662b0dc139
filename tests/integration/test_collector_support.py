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
from schemas.envelope import is_envelope, partition_for, unpack

WRITE_KEY = "wk-web"
NO_TESTCLIENT_WARNING = pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")


class Message(NamedTuple):
    """One event (or bad row) as Kafka holds it. For an event of an envelope, `key` is the device key the
    collector partitioned it by (anonymousId, else userId: envelopes carry no key of their own)."""

    key: str | None
    value: dict[str, Any]
    partition: int
    offset: int = 0  # the record's: events of one envelope share it


@contextlib.contextmanager
def running_collector(settings: FootfallSettings, tmp_path: Path, sources: list[dict] | None = None, **config: Any) -> Iterator[Any]:
    """The real app, lifespan and Kafka writer included, behind Starlette's TestClient."""
    from starlette.testclient import TestClient  # imported here, where NO_TESTCLIENT_WARNING applies

    with TestClient(collector_app(settings, tmp_path, sources, **config)) as client:
        yield client


def collector_app(settings: FootfallSettings, tmp_path: Path, sources: list[dict] | None = None, **config: Any) -> Any:
    """The real app (start its lifespan to get its Kafka writer)."""
    path = tmp_path / f"sources-{uuid.uuid4().hex[:6]}.json"
    path.write_bytes(orjson.dumps(sources or [{"id": "web", "write_key": WRITE_KEY}]))
    return create_app(settings, CollectorConfig(sources_file=path, **config))


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
    """Every message Kafka holds on `topic` (up to its high watermarks when this is called), envelopes unpacked.
    Each event of an envelope is checked to be on the partition its device key belongs to."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        expected = _end_offsets(consumer, topic, partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        records = 0
        deadline = time.monotonic() + timeout_s
        while records < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.2):
                if message.error() is None:
                    records += 1
                    messages += _messages_of(message, len(partitions))
        assert records == expected, f"read {records} of {expected} records from {topic}"
        return messages
    finally:
        consumer.close()


def _messages_of(record, partitions: int) -> list[Message]:
    if not is_envelope(record.headers()):
        key = record.key().decode() if record.key() is not None else None
        return [Message(key, orjson.loads(record.value()), record.partition(), record.offset())]
    messages = []
    for event in unpack(record.value(), record.headers()):
        value = orjson.loads(event)
        key = value["anonymous_id"] or value["user_id"]
        assert record.partition() == partition_for(key.encode(), partitions), f"{key} is in an envelope of another partition"
        messages.append(Message(key, value, record.partition(), record.offset()))
    return messages


def raw_events(settings: FootfallSettings) -> list[Message]:
    return read_all(settings, settings.topics.raw.name)


def bad_rows(settings: FootfallSettings) -> list[Message]:
    return read_all(settings, settings.topics.dead_letter.name)
