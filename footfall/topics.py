"""Create footfall's topics with their partition counts and configs (idempotent), and read one back whole
(diagnostics, the tests and the benchmarks)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from projections.replay import end_offsets
from schemas.config import FootfallSettings
from schemas.envelope import EnvelopeError, unpack
from schemas.topics import TopicSpec


def ensure_topics(bootstrap_servers: str, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create whichever topics are missing; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.config) for s in missing],
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def read_topic(settings: FootfallSettings, topic: str, timeout_s: float = 30, complete: bool = False) -> list[Any]:
    """Every record on `topic` from the beginning to the end offsets taken now, as confluent-kafka messages
    (partition, offset, timestamp and raw value: poison included). With `complete`, failing to reach the end
    in time is an error; otherwise (diagnostics) whatever was read comes back."""
    ends = end_offsets(settings, [topic])
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"diagnostic-{time.time_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while ends and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None or message.error():
                continue
            position = (message.topic(), message.partition())
            if position in ends and message.offset() < ends[position]:
                records.append(message)
            if message.offset() + 1 >= ends.get(position, 0):
                ends.pop(position, None)
    finally:
        consumer.close()
    if complete and ends:
        raise AssertionError(f"{topic}: could not read to the end of {sorted(ends)} within {timeout_s}s")
    return records


def topic_message_ids(settings: FootfallSettings, topic: str) -> list[str]:
    """Every message id on `topic`, from the beginning (a diagnostic: where did a missing event stop?)."""
    ids = []
    for record in read_topic(settings, topic):
        with contextlib.suppress(EnvelopeError):
            for value in unpack(record.value(), record.headers()):  # an envelope's events, or the record itself
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    body = orjson.loads(value)
                    ids.append(body.get("message_id") or body.get("messageId"))
    return ids


def topic_values(settings: FootfallSettings, topic: str, timeout_s: float = 30) -> list[bytes]:
    """Every message value on `topic`, from the beginning to the end offsets taken now (e.g. the dead-letter topic)."""
    return [record.value() for record in read_topic(settings, topic, timeout_s, complete=True)]
