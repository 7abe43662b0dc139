"""partition_for agrees with the partitioner the collector's librdkafka producer uses (murmur2_random) on a
real broker: an envelope addressed by partition_for holds the same events a keyed produce would put there."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.envelope import partition_for

pytestmark = pytest.mark.integration


def test_partition_for_equals_the_partition_librdkafka_murmur2_random_picks(kafka_bootstrap):
    topic = f"test-partitioner-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 7, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    landed: dict[bytes, int] = {}
    keys = [f"anon-{uuid.uuid4()}".encode() for _ in range(300)] + ["ünïcode-ключ".encode(), b"u"]
    for key in keys:
        producer.produce(topic, b"{}", key, on_delivery=lambda err, msg: landed.__setitem__(msg.key(), msg.partition()))
    assert producer.flush(30) == 0
    assert len(landed) == len(keys)
    assert {key: partition_for(key, 7) for key in keys} == landed
