"""Publishing commands: `await bus.send(records)` returns once Kafka acknowledged every record.

acks=all with the idempotent producer. A delivery report is handed back to the event loop through
`call_soon_threadsafe` from a polling thread: commands are few (people and imports, not page views), so
one thread per process is plenty. Kafka away or slow → `CommandsUnavailable` → 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer


class CommandsUnavailable(Exception):
    """Kafka did not acknowledge the command in time: nothing is promised, the client retries."""


class Record(NamedTuple):
    topic: str
    key: str | None
    value: bytes


class CommandBus:
    def __init__(self, bootstrap_servers: str, ack_timeout_s: float = 10.0):
        self.ack_timeout_s = ack_timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                "partitioner": "murmur2_random",  # the processors' partitioner (schemas/topics.py)
                "message.timeout.ms": int(ack_timeout_s * 1000 * 3),
            }
        )
        self.acknowledged: Callable[[list[str]], None] | None = None  # told the topics of every acknowledged send
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="command-bus", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def send(self, records: Sequence[Record]) -> None:
        """Produce every record; return once Kafka acknowledged all of them."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        remaining = [len(records)]
        errors: list[KafkaError] = []

        def settle(error: KafkaError | None, _message) -> None:
            if error is not None:
                errors.append(error)
            remaining[0] -= 1
            if remaining[0] == 0:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        try:
            for topic, key, value in records:
                self._producer.produce(topic, value, key, on_delivery=settle)
        except (BufferError, KafkaException) as exc:
            raise CommandsUnavailable(f"the producer refused the command: {exc}") from exc
        try:
            await asyncio.wait_for(asyncio.shield(done), self.ack_timeout_s)
        except TimeoutError as exc:
            raise CommandsUnavailable(f"Kafka did not acknowledge within {self.ack_timeout_s}s") from exc
        if errors:
            raise CommandsUnavailable(f"Kafka refused the command: {errors[0].str()}")
        if self.acknowledged is not None:
            self.acknowledged([record.topic for record in records])

    def close(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._poller.join(2)
        self._producer.flush(timeout_s)
        self._producer.close()
