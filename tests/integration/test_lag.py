"""footfall lag reads committed offsets and end offsets from the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from footfall.lag import consumer_lag
from footfall.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_lag_is_the_end_minus_the_committed_offset(settings):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    topic = settings.topics.raw.name
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for _ in range(5):
        producer.produce(topic, b"x", partition=0)
    assert producer.flush(10) == 0
    group = f"{settings.topic_prefix}-lag-test"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    consumer.close()

    rows = {row.partition: row for row in consumer_lag(settings.kafka_bootstrap_servers, group, [topic])}

    assert (rows[0].committed, rows[0].end, rows[0].lag) == (3, 5, 2)
    assert all((row.committed, row.lag) == (-1, 0) for p, row in rows.items() if p != 0)
