"""Replicate small or compacted topics into a process's memory: the one piece of Kafka reading that several
stages share (the collector's config state, the management API's config registry), so it lives where
stages meet.

A `TopicTail` reads every partition of its topics from the beginning, without a consumer group (every
process keeps a whole copy; nothing is committed), and hands each record to a callback on its own thread.
`ready` is set once it has read up to the end offsets that existed when it started, so a process can
refuse to answer from a half-loaded copy. Topics that do not exist yet are looked for again every few
seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

OnRecord = Callable[[str, bytes | None, bytes | None], None]  # topic, key, value (None: a tombstone)
RECHECK_TOPICS_S = 3.0


class TopicTail:
    def __init__(self, bootstrap_servers: str, topics: list[str], on_record: OnRecord, name: str = "tail"):
        self.topics = topics
        self.on_record = on_record
        self.name = name
        self.ready = threading.Event()
        self.records = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"footfall-{name}-unused",  # required by librdkafka; never joined (assign, no commits)
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 50,  # a definition change reaches every worker within a fraction of a second
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )
        self._assigned: set[str] = set()
        self._checked = False
        self._remaining: dict[tuple[str, int], int] = {}  # partition → end offset still to reach before `ready`

    def start(self) -> TopicTail:
        self._thread = threading.Thread(target=self._run, name=f"footfall-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                if len(self._assigned) < len(self.topics) and time.monotonic() >= next_check:
                    complete = self._assign_new_topics()
                    next_check = time.monotonic() + (RECHECK_TOPICS_S if complete else 0.5)
                if not self._assigned:
                    self._check_ready()
                    self._stopping.wait(0.2)
                    continue
                for message in self._consumer.consume(500, timeout=0.2):
                    if (error := message.error()) is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: %s", self.name, error.str())
                        continue
                    self._apply(message)
                self._check_ready()
        finally:
            self._consumer.close()

    def _apply(self, message: Message) -> None:
        try:
            self.on_record(message.topic() or "", message.key(), message.value())  # a consumed record always has its topic
        except Exception:
            log.exception("%s: skipped an unreadable record at %s/%d@%d", self.name, message.topic(), message.partition(), message.offset())
        self.records += 1

    def _assign_new_topics(self) -> bool:
        """Start reading the topics that exist now; False when the cluster could not say (try again soon).
        A topic just created may have no leader yet: its end offsets are asked again until it has."""
        try:
            metadata = self._consumer.list_topics(timeout=5)
            new = [t for t in self.topics if t not in self._assigned and t in metadata.topics and not metadata.topics[t].error]
            partitions = [TopicPartition(t, p, OFFSET_BEGINNING) for t in new for p in metadata.topics[t].partitions]
            ends = {(tp.topic, tp.partition): self._consumer.get_watermark_offsets(tp, timeout=5) for tp in partitions}
        except KafkaException as exc:
            log.info("%s: the cluster's metadata is not complete yet (%s); asking again", self.name, exc)
            return False
        self._remaining.update({position: high for position, (low, high) in ends.items() if high > low})
        if partitions:
            self._consumer.incremental_assign(partitions)
            self._assigned.update(new)
        self._checked = True
        return True

    def _check_ready(self) -> None:
        """Ready once every partition that existed at the first look was read to its end offset of then
        (by position, not by the last record seen: compaction can leave gaps at the end)."""
        if self.ready.is_set() or not self._checked:
            return
        if self._remaining:
            positions = self._consumer.position([TopicPartition(t, p) for t, p in self._remaining])
            for tp in positions:
                if tp.offset >= 0 and tp.offset >= self._remaining[(tp.topic, tp.partition)]:
                    del self._remaining[(tp.topic, tp.partition)]
        if not self._remaining:
            self.ready.set()
