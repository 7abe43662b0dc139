"""Consumer lag of footfall's consumer groups: how far each stage is behind, per partition."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int  # -1 when the group never committed on it
    end: int

    @property
    def lag(self) -> int:
        return self.end - max(self.committed, 0)


def consumer_lag(bootstrap_servers: str, group: str, topics: list[str], timeout_s: float = 10) -> list[PartitionLag]:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    probe = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"{group}-lag-probe", "enable.auto.commit": False})
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in probe.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        ]
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        committed = admin.list_consumer_group_offsets(request)[group].result().topic_partitions
        # librdkafka says OFFSET_INVALID (-1001) where the group never committed; footfall says -1.
        by_position = {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else -1 for tp in committed}
        return [
            PartitionLag(
                group,
                tp.topic,
                tp.partition,
                by_position.get((tp.topic, tp.partition), -1),
                probe.get_watermark_offsets(tp, timeout=timeout_s)[1],
            )
            for tp in partitions
        ]
    finally:
        probe.close()
