"""Consumer lag of footfall's consumer groups: how far each stage is behind, per partition."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

# What a partition answers while its leader moves (a broker restarting, a topic just created): ask again.
MOVING_LEADER = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


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
                _end_offset(probe, tp, timeout_s),
            )
            for tp in partitions
        ]
    finally:
        probe.close()


def _leader_moving(exc: BaseException) -> bool:
    if not isinstance(exc, KafkaException) or not isinstance(exc.args[0], KafkaError):
        return False
    return exc.args[0].retriable() or exc.args[0].code() in MOVING_LEADER


def _end_offset(probe: Consumer, tp: TopicPartition, timeout_s: float) -> int:
    """The partition's end offset, asked again for up to `timeout_s` while its leader moves."""
    for attempt in Retrying(retry=retry_if_exception(_leader_moving), stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), reraise=True):
        with attempt:
            return probe.get_watermark_offsets(tp, timeout=timeout_s)[1]
    raise AssertionError("unreachable: Retrying returns or raises")
