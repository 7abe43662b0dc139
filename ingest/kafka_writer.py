"""A thin async face on confluent-kafka's producer: `await write(...)` returns once Kafka has the records.

acks=all and idempotence, so an acknowledged write is on every in-sync replica exactly once. A
background thread serves delivery reports; each request waits on one future, so the event loop
never blocks and the thread hop costs one call per request, not one per event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger(__name__)


class KafkaUnavailable(Exception):
    """Kafka did not take the records (down, slow or the local queue is full): answer 503, the SDK retries."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


class _PendingWrite:
    """Counts down delivery reports for one request and settles its future once, from the poll thread."""

    __slots__ = ("loop", "future", "remaining", "error")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, count: int):
        self.loop = loop
        self.future = future
        self.remaining = count
        self.error: KafkaError | None = None

    def on_delivery(self, error: KafkaError | None, _message) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if not self.future.done():
            self.future.set_result(self.error)


class KafkaWriter:
    def __init__(self, bootstrap_servers: str, *, request_timeout_s: float = 10.0, extra: dict | None = None):
        self.request_timeout_s = request_timeout_s
        self._brokers_down = False
        config = {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            # Java's (and aiokafka's) partitioner, so a key lands on the same partition whichever client
            # writes it: the stream processors rely on this to co-partition tables with the raw topic.
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 200_000,
            "queue.buffering.max.kbytes": 256 * 1024,
            # A write the SDK was told failed (503) may still land later; downstream dedups by messageId.
            "message.timeout.ms": int(request_timeout_s * 1000 * 3),
            "error_cb": self._on_error,
            **(extra or {}),
        }
        self._producer = Producer(config)
        self._running = True
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-delivery-reports", daemon=True)
        self._poller.start()

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka producer: %s", error.str())

    def _poll_forever(self) -> None:
        while self._running:
            if self._producer.poll(0.1) > 0:
                self._brokers_down = False

    @property
    def queue_depth(self) -> int:
        return len(self._producer)

    @property
    def healthy(self) -> bool:
        return not self._brokers_down

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """Ask the cluster for metadata: the readiness probe's question."""
        try:
            self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        self._brokers_down = False
        return True

    async def write(self, records: Sequence[Record]) -> None:
        """Produce all records and wait until Kafka acknowledged every one of them."""
        if not records:
            return
        if self._brokers_down:
            raise KafkaUnavailable("no Kafka broker is reachable")
        loop = asyncio.get_running_loop()
        pending = _PendingWrite(loop, loop.create_future(), len(records))
        produced = 0
        try:
            for record in records:
                self._producer.produce(record.topic, record.value, record.key, on_delivery=pending.on_delivery)
                produced += 1
        except (BufferError, KafkaException) as exc:
            # Records already queued still get reports; count the rest as failed so the future settles.
            for _ in range(len(records) - produced):
                pending.on_delivery(KafkaError(KafkaError._QUEUE_FULL), None)
            raise KafkaUnavailable(f"producer queue is full ({exc})") from exc
        try:
            error = await asyncio.wait_for(asyncio.shield(pending.future), self.request_timeout_s)
        except TimeoutError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self.request_timeout_s}s") from exc
        if error is not None:
            raise KafkaUnavailable(f"Kafka refused the write: {error.str()}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._running = False
        self._poller.join(timeout=2)
