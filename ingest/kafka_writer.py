"""A thin async face on confluent-kafka's producer: `await write(...)` returns once Kafka has the records.

acks=all and idempotence, so an acknowledged write is on every in-sync replica exactly once.
Delivery reports are served on the event loop's own thread: `poll(0)` never blocks; it runs after
each write and every millisecond while records are in flight (every 50 ms when idle, for error
reports), and settles each request's future directly — no thread hop and no GIL contention per
event or per request. Calls that can block (metadata requests, flush) run in a worker thread or at
shutdown. A write not acknowledged within `ack_timeout_s` is answered as failed.

When every broker is down, writes are refused at once (503 + Retry-After) instead of piling up in
the producer's queue; a metadata probe each second notices the broker's return.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer

from ingest import metrics

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.05
PROBE_EVERY_S = 1.0


class KafkaUnavailable(Exception):
    """Kafka did not take the records (down, slow or the local queue is full): answer 503, the SDK retries."""


class Record(NamedTuple):
    topic: str
    key: str | bytes | None
    value: bytes


class _PendingWrite:
    """Counts down the delivery reports of one request and settles its future once."""

    __slots__ = ("future", "remaining", "error", "deadline")

    def __init__(self, future: asyncio.Future, count: int, deadline: float):
        self.future = future
        self.remaining = count
        self.error: KafkaError | None = None
        self.deadline = deadline

    def on_delivery(self, error: KafkaError | None, _message=None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.error)


class KafkaWriter:
    def __init__(self, bootstrap_servers: str, *, ack_timeout_s: float = 10.0, extra: dict | None = None):
        self.ack_timeout_s = ack_timeout_s
        self.brokers_down = False
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
            "message.timeout.ms": int(ack_timeout_s * 1000 * 3),
            "error_cb": self._on_error,
            **(extra or {}),
        }
        self._producer = Producer(config)
        self._loop = asyncio.get_running_loop()
        self._next_poll: asyncio.Handle | None = None  # uvloop gives a plain Handle for a time already past
        self._next_poll_due = 0.0
        # Every write has the same timeout, so the oldest pending write is always the first to expire.
        self._pending: deque[_PendingWrite] = deque()
        self._probing = False
        self._schedule_poll(IDLE_POLL_S)

    async def write(self, records: Sequence[Record]) -> None:
        """Produce all records and wait until Kafka acknowledged every one of them."""
        if not records:
            return
        if self.brokers_down:
            raise KafkaUnavailable("no Kafka broker is reachable")
        pending = _PendingWrite(self._loop.create_future(), len(records), self._loop.time() + self.ack_timeout_s)
        self._produce(records, pending)
        self._pending.append(pending)
        self._producer.poll(0)  # serve reports that are ready while this code is hot; the timer does the rest
        self._schedule_poll(BUSY_POLL_S)
        error = await pending.future
        if error is not None:
            raise KafkaUnavailable(f"Kafka did not take the write: {error.str()}")

    def _produce(self, records: Sequence[Record], pending: _PendingWrite) -> None:
        produce, on_delivery = self._producer.produce, pending.on_delivery
        queued = 0
        try:
            for topic, key, value in records:
                produce(topic, value, key, on_delivery=on_delivery)
                queued += 1
        except (BufferError, KafkaException) as exc:
            # Records already queued still get reports; count the rest as failed so the future settles.
            for _ in range(len(records) - queued):
                on_delivery(KafkaError(KafkaError._QUEUE_FULL))
            raise KafkaUnavailable(f"the producer refused records: {exc}") from exc

    # -- serving delivery reports on the event loop ------------------------------------------------------

    def _schedule_poll(self, delay: float) -> None:
        due = self._loop.time() + delay
        if self._next_poll is not None:
            if self._next_poll_due <= due:
                return
            self._next_poll.cancel()
        self._next_poll, self._next_poll_due = self._loop.call_at(due, self._poll), due

    def _poll(self) -> None:
        self._next_poll = None
        self._producer.poll(0)
        self._expire_pending()
        metrics.QUEUE_DEPTH.set(len(self._producer))
        if self.brokers_down and not self._probing:
            self._probing = True
            self._loop.create_task(self._probe())
        self._schedule_poll(BUSY_POLL_S if len(self._producer) else IDLE_POLL_S)

    def _expire_pending(self) -> None:
        """Forget settled writes; fail those Kafka did not acknowledge in time (they may still land later)."""
        now = self._loop.time()
        while self._pending and (self._pending[0].future.done() or self._pending[0].deadline <= now):
            pending = self._pending.popleft()
            if not pending.future.done():
                pending.future.set_result(KafkaError(KafkaError._MSG_TIMED_OUT, f"no acknowledgement within {self.ack_timeout_s}s"))

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_down = True
        log.warning("kafka producer: %s", error.str())

    async def _probe(self) -> None:
        try:
            await asyncio.sleep(PROBE_EVERY_S)
            if await self.broker_reachable():
                log.warning("kafka producer: a broker is reachable again")
        finally:
            self._probing = False

    async def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """Ask the cluster for metadata (in a worker thread: the call blocks): the readiness probe's question."""
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=timeout_s)
        except KafkaException:
            return False
        self.brokers_down = False
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        if self._next_poll is not None:
            self._next_poll.cancel()
        self._producer.flush(timeout_s)
        self._producer.close()
