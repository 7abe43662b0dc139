"""A compacted topic followed into memory: key → latest value, for small tables every process needs whole.

Property definitions (and anything like them: a few hundred records at most) live on a compacted topic and
are needed by every API process and every projector, whatever partitions their consumer groups own. So a
follower belongs to no group: it assigns itself every partition from the beginning, `catch_up` reads to
the end offsets taken when it is called (a process reads the whole table before it starts work), and
`poll` picks up what arrived since, without waiting. A record with no value (a tombstone) removes its key.

This is the one Kafka adapter in schemas/: the stages share it as they share the records it reads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

T = TypeVar("T")


def end_offset(consumer: Consumer, partition: TopicPartition, timeout_s: float = 30) -> int:
    """The partition's end, asked again while its leader is not known yet (a topic just created, a broker
    restarting: NOT_LEADER_FOR_PARTITION for a moment). Every reader that reads a topic to its end uses it."""
    retrying = Retrying(retry=retry_if_exception_type(KafkaException), stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), reraise=True)
    ends: tuple[int, int] = retrying(consumer.get_watermark_offsets, partition, timeout=min(10.0, timeout_s))
    return ends[1]


class CompactedFollower(Generic[T]):
    def __init__(self, bootstrap_servers: str, topic: str, decode: Callable[[bytes], T]):
        self.topic = topic
        self.decode = decode
        self.values: dict[str, T] = {}
        self.unreadable = 0  # records `decode` refused (skipped: a table must not stop a stage)
        self.positions: dict[int, int] = {}  # partition → next offset to read
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"follower-{uuid.uuid4().hex}",  # required by librdkafka; never joined or committed
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._assigned = False

    def _assign(self, timeout_s: float) -> list[int]:
        metadata = self._consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise LookupError(f"topic {self.topic} is not there: {metadata.error if metadata else 'unknown'}")
        partitions = sorted(metadata.partitions)
        if not self._assigned:
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            self.positions = dict.fromkeys(partitions, 0)
            self._assigned = True
        return partitions

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until every partition reached its end offset as of now (raises TimeoutError past the deadline)."""
        deadline = time.monotonic() + timeout_s
        partitions = self._assign(timeout_s)
        ends = {p: self._end_offset(p, deadline) for p in partitions}
        while any(self.positions.get(p, 0) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: not caught up after {timeout_s}s")
            self.poll(timeout_s=0.2)

    def _end_offset(self, partition: int, deadline: float) -> int:
        try:
            return end_offset(self._consumer, TopicPartition(self.topic, partition), timeout_s=max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            raise TimeoutError(f"{self.topic}: no end offset for partition {partition}: {exc}") from exc

    def poll(self, timeout_s: float = 0.0, max_messages: int = 1000) -> int:
        """Apply what has arrived; the number of records read."""
        if not self._assigned:
            self._assign(10)
        messages = self._consumer.consume(max_messages, timeout=timeout_s)
        for message in messages:
            if (error := message.error()) is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"{self.topic}: {error.str()}")
                continue
            partition, offset, value = message.partition(), message.offset(), message.value()
            assert partition is not None and offset is not None  # a consumed record has both
            self.positions[partition] = offset + 1
            key = (message.key() or b"").decode("utf-8", "replace")
            if value is None:
                self.values.pop(key, None)
                continue
            try:
                self.values[key] = self.decode(value)
            except ValueError:
                self.unreadable += 1
        return len(messages)

    def wait_for(self, partition: int, offset: int, timeout_s: float = 10.0) -> bool:
        """Read until the record at (partition, offset) is applied: a writer reads its own write."""
        deadline = time.monotonic() + timeout_s
        while self.positions.get(partition, 0) <= offset:
            if time.monotonic() > deadline:
                return False
            self.poll(timeout_s=0.1)
        return True

    def close(self) -> None:
        self._consumer.close()
