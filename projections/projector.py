"""Kafka → ClickHouse: consume enriched events, insert them in batches, commit offsets after the insert.

Batches are bounded by rows and seconds. Offsets are committed only once ClickHouse accepted the batch,
so a crash replays the batch; the events table's replacing key makes the replay collapse into the rows
already there (exactly once in effect). A batch that ClickHouse refuses is retried with backoff while
consumption is paused: nothing is dropped and memory stays bounded by one batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from projections.event_rows import EVENT_COLUMNS, event_row
from schemas.bad_rows import BadRow, Problem
from schemas.config import FootfallSettings
from schemas.events import EnrichedEvent

log = logging.getLogger(__name__)


@dataclass
class Batch:
    rows: list[list] = field(default_factory=list)
    bad_rows: list[bytes] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition → offset to commit
    first_offsets: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, message: Message) -> None:
        partition, offset = message.partition(), message.offset()
        self.first_offsets.setdefault(partition, offset)
        self.next_offsets[partition] = offset + 1
        try:
            event = EnrichedEvent.model_validate_json(message.value())
        except ValidationError as exc:
            self.bad_rows.append(_bad_row(message.value(), f"not an enriched event: {exc.error_count()} errors"))
            return
        self.rows.append(event_row(event, partition, offset))

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.bad_rows)

    def dedup_token(self) -> str:
        """Same offsets, same token: ClickHouse drops an identical retried insert."""
        ranges = ",".join(f"{p}:{self.first_offsets[p]}-{self.next_offsets[p]}" for p in sorted(self.next_offsets))
        return hashlib.sha256(ranges.encode()).hexdigest()


def _bad_row(payload: bytes, reason: str) -> bytes:
    return BadRow(
        stage="projector",
        problems=[Problem(field="message", reason=reason)],
        source_id=None,
        received_at=datetime.now(UTC),
        payload=(payload or b"").decode("utf-8", "backslashreplace"),
    ).model_dump_json().encode()


class Projector:
    def __init__(self, settings: FootfallSettings, client: Client):
        self.settings = settings
        self.client = client
        self.topic = settings.topics.enriched.name
        self.events_table = f"{settings.database}.events"
        self.stopping = threading.Event()
        self.batch = Batch()
        self.rows_written = 0
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"{settings.topic_prefix}-projector",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.poll.interval.ms": 600_000,
            }
        )
        self.dead_letter = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True}
        )

    def run(self) -> None:
        self.consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        try:
            while not self.stopping.is_set():
                self.fill(self.batch)
                self.flush()
            self.flush()
        finally:
            self.consumer.close()
            self.dead_letter.flush(10)

    def stop(self) -> None:
        self.stopping.set()

    def flush(self) -> None:
        """Write the batch in progress, then commit its offsets."""
        batch, self.batch = self.batch, Batch()
        if batch.size:
            self.write(batch)
            self.commit(batch)

    def _on_revoke(self, _consumer, _partitions) -> None:
        # Finish what was read from the partitions leaving us, so the next owner starts after it.
        self.flush()

    def fill(self, batch: Batch) -> None:
        """Consume into the batch until it holds enough rows or is old enough."""
        deadline = batch.started + self.settings.batch_max_seconds
        while not self.stopping.is_set() and batch is self.batch and batch.size < self.settings.batch_max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wanted = min(self.settings.batch_max_rows - batch.size, 5_000)
            for message in self.consumer.consume(wanted, timeout=min(remaining, 0.2)):
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer: %s", message.error().str())
                    continue
                self.batch.add(message)

    def write(self, batch: Batch) -> None:
        """Insert until ClickHouse accepts; consumption waits meanwhile (backpressure, no drops)."""
        for bad in batch.bad_rows:
            self.dead_letter.produce(self.settings.topics.dead_letter.name, bad)
        if batch.bad_rows and self.dead_letter.flush(30) > 0:
            raise RuntimeError("dead-letter topic did not acknowledge the projector's bad rows")
        delay = 0.5
        while batch.rows:
            try:
                self.client.insert(
                    self.events_table,
                    batch.rows,
                    column_names=[name for name, _ in EVENT_COLUMNS],
                    column_type_names=[kind for _, kind in EVENT_COLUMNS],
                    settings={"insert_deduplication_token": batch.dedup_token()},
                )
                break
            except ClickHouseError as exc:
                if self.stopping.is_set():
                    raise
                log.warning("ClickHouse refused a batch of %d rows (%s); retrying in %.1fs", len(batch.rows), exc, delay)
                # Not consuming meanwhile is the backpressure; librdkafka keeps the group membership alive.
                self.stopping.wait(delay)
                delay = min(delay * 2, 30)
        self.rows_written += len(batch.rows)

    def commit(self, batch: Batch) -> None:
        offsets = [TopicPartition(self.topic, p, o) for p, o in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The group moved on (rebalance): the new owner replays from the last commit, and the
            # replacing key collapses what this batch already wrote.
            log.warning("offset commit refused (%s); the batch will be replayed and deduplicated", exc)
