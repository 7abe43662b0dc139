"""A thin async face on confluent-kafka's producer: `await write(...)` returns once Kafka has the records.

acks=all and idempotence, so an acknowledged write is on every in-sync replica exactly once.
Delivery reports are served on the event loop's own thread: `poll(0)` never blocks; it runs after
each write and every millisecond while records are in flight (every 50 ms when idle, for error
reports), and settles each request's future directly — no thread hop and no GIL contention per
event or per request. Calls that can block (metadata requests, flush) run in a worker thread or at
shutdown. A write not acknowledged within `ack_timeout_s` is answered as failed.

When every broker is down, writes are refused at once (503 + Retry-After) instead of piling up in
the producer's queue; a metadata probe each second notices the broker's return.

Accepted events go to `raw` in envelopes (schemas.envelope): `write(events=...)` adds them to the flush window
(ingest.flush_window), shared by every request of the window; at its end (or when an envelope is full) each
envelope is produced to its partition, named explicitly. The partition count is the topic's own, from the
cluster's metadata (asked at start and with every readiness probe).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer

from ingest import metrics
from ingest.flush_window import FlushWindow, Sealed
from schemas.envelope import EnvelopeLimits

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.05
PROBE_EVERY_S = 1.0
METADATA_EVERY_S = 30.0  # how soon partitions added to the raw topic are used


class KafkaUnavailable(Exception):
    """Kafka did not take the records (down, slow or the local queue is full): answer 503, the SDK retries."""


class Record(NamedTuple):
    topic: str
    key: str | bytes | None
    value: bytes


class Event(NamedTuple):
    """An accepted event for the raw topic: its device key (which picks the partition) and its bytes."""

    key: bytes
    value: bytes


@dataclass(frozen=True)
class EnvelopeWindow:
    """Where accepted events go and how they share records: the raw topic, the flush window and envelope limits."""

    topic: str
    flush_s: float = 0.005
    limits: EnvelopeLimits = EnvelopeLimits()


class _PendingWrite:
    """Counts down what one request waits for and settles its future once: `outstanding` is its events still
    in the flush window plus the records holding its events (or its own records) that Kafka has not yet
    acknowledged. An envelope holding n of its events turns n waiting events into one waiting record."""

    __slots__ = ("future", "outstanding", "error", "deadline")

    def __init__(self, future: asyncio.Future, count: int, deadline: float):
        self.future = future
        self.outstanding = count
        self.error: KafkaError | None = None
        self.deadline = deadline

    def on_delivery(self, error: KafkaError | None, _message=None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.outstanding -= 1
        if self.outstanding == 0 and not self.future.done():
            self.future.set_result(self.error)


class _EnvelopeDelivery:
    """The delivery report of one envelope, passed on to every request with events in it."""

    __slots__ = ("owners",)

    def __init__(self, owners: Sequence[_PendingWrite]):
        self.owners = owners

    def __call__(self, error: KafkaError | None, _message=None) -> None:
        for owner in self.owners:
            owner.on_delivery(error)


class KafkaWriter:
    def __init__(self, bootstrap_servers: str, window: EnvelopeWindow, *, ack_timeout_s: float = 10.0, extra: dict | None = None):
        self.ack_timeout_s = ack_timeout_s
        self.brokers_down = False
        self.window = window
        self._raw_partitions: int | None = None  # until the cluster's metadata tells
        self._metadata_request: asyncio.Task | None = None
        self._flush_window: FlushWindow[_PendingWrite] | None = None
        self._window_end: asyncio.Handle | None = None
        config = {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            # The flush window already gathers events into envelopes; this only lets one window's envelopes
            # for different partitions leave in one request per broker.
            "linger.ms": 1,
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
        self._probe_task: asyncio.Task | None = None  # cancelled by close(): it would ask a closed producer
        self._metadata_due = 0.0  # ask at once: the raw topic's partition count
        self._schedule_poll(IDLE_POLL_S)

    async def write(self, records: Sequence[Record] = (), events: Sequence[Event] = ()) -> None:
        """Produce the records, put the events in the flush window's envelopes, and wait until Kafka
        acknowledged every record holding any of them."""
        if not records and not events:
            return
        if self.brokers_down:
            raise KafkaUnavailable("no Kafka broker is reachable")
        if events and self._raw_partitions is None:
            await self._ask_partitions()
        pending = _PendingWrite(self._loop.create_future(), len(records) + len(events), self._loop.time() + self.ack_timeout_s)
        self._pending.append(pending)
        self._produce(records, pending)
        if events:
            self._add_to_window(events, pending)
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

    # -- the flush window: events of many requests in one envelope per partition ---------------------------

    def _add_to_window(self, events: Sequence[Event], pending: _PendingWrite) -> None:
        window = self._flush_window
        if window is None or (not window and window.partitions != self._raw_partitions):
            window = self._flush_window = FlushWindow(self._raw_partitions, self.window.limits)
        for key, value in events:
            for sealed in window.add(key, value, pending):
                self._produce_envelope(sealed)
        if window and self._window_end is None:
            self._window_end = self._loop.call_later(self.window.flush_s, self._end_window)

    def _end_window(self) -> None:
        self._window_end = None
        for sealed in self._flush_window.seal_all():
            self._produce_envelope(sealed)
        self._producer.poll(0)
        self._schedule_poll(BUSY_POLL_S)

    def _produce_envelope(self, sealed: Sealed[_PendingWrite]) -> None:
        for owner, count in sealed.owners.items():
            owner.outstanding -= count - 1  # its `count` events are now one record
        delivery = _EnvelopeDelivery(tuple(sealed.owners))
        envelope = sealed.envelope
        metrics.ENVELOPE_EVENTS.observe(envelope.count)
        try:
            self._producer.produce(
                self.window.topic, envelope.value, None, partition=sealed.partition, headers=envelope.headers, on_delivery=delivery
            )
        except (BufferError, KafkaException) as exc:
            # Its requests are answered 503 (they may be answered before their other envelopes settle).
            log.debug("the producer refused an envelope: %s", exc)
            delivery(KafkaError(KafkaError._QUEUE_FULL))

    async def _ask_partitions(self) -> None:
        """Wait for the raw topic's partition count (one metadata request shared by every request waiting)."""
        if self._metadata_request is None or self._metadata_request.done():
            self._metadata_request = self._loop.create_task(self._wait_for_partitions())
        await asyncio.shield(self._metadata_request)
        if self._raw_partitions is None:
            raise KafkaUnavailable(f"the partitions of {self.window.topic} are not known (is Kafka up, does the topic exist?)")

    async def _wait_for_partitions(self) -> None:
        """Ask until the metadata names the raw topic's partitions: a topic just created takes a moment to
        appear in every broker's metadata. Gives up when no broker answers, or after the ack timeout."""
        deadline = self._loop.time() + self.ack_timeout_s
        while self._raw_partitions is None and (remaining := deadline - self._loop.time()) > 0:
            if not await self.broker_reachable(timeout_s=remaining):
                return
            if self._raw_partitions is None:
                await asyncio.sleep(0.1)

    def _learn_partitions(self, metadata) -> None:
        """The raw topic's partition count from cluster metadata; a new count takes effect at the next window."""
        topic = metadata.topics.get(self.window.topic)
        if topic is None or not topic.partitions:  # (a topic just created may still report a leader election)
            return
        self._raw_partitions = len(topic.partitions)

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
        if not self._probing and (self.brokers_down or self._raw_partitions is None or self._loop.time() >= self._metadata_due):
            self._probing = True
            self._probe_task = self._loop.create_task(self._probe())
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
            was_down = self.brokers_down
            self._metadata_due = self._loop.time() + METADATA_EVERY_S
            await asyncio.sleep(PROBE_EVERY_S)
            if await self.broker_reachable() and was_down:
                log.warning("kafka producer: a broker is reachable again")
        finally:
            self._probing = False

    async def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """Ask the cluster for metadata (in a worker thread: the call blocks): the readiness probe's question.
        The answer also tells the raw topic's partition count."""
        try:
            metadata = await asyncio.to_thread(self._producer.list_topics, timeout=timeout_s)
        except KafkaException:
            return False
        self.brokers_down = False
        self._learn_partitions(metadata)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        if self._next_poll is not None:
            self._next_poll.cancel()
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self._window_end is not None:
            self._window_end.cancel()
            self._end_window()
        self._producer.flush(timeout_s)
        self._producer.close()
