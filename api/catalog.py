"""A small compacted topic the API keeps in memory (lifecycle stages, lists), followed in a background thread.

Like property definitions (api/definitions.py): every API process follows the whole topic
(schemas/compacted.py), a write is answered once this process has read it back (`wait_for`), and reads
answer 503 until the topic was read to its end once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import KafkaException
from starlette.concurrency import run_in_threadpool

from api.commands import CommandBus, Record
from api.errors import ApiError, FieldError
from schemas.compacted import CompactedFollower

T = TypeVar("T")
POLL_INTERVAL_S = 0.2


class Catalog(Generic[T]):
    def __init__(self, bootstrap_servers: str, topic: str, decode: Callable[[bytes], T], what: str):
        self.topic = topic
        self.what = what  # the field a 503 names
        self._follower = CompactedFollower(bootstrap_servers, topic, decode)
        self._lock = threading.Lock()
        self._records: dict[str, T] = {}
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name=self.what, daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._follower.catch_up(timeout_s=30)
                    break
                except LookupError:  # no topic yet, so no records: answer with none (the defaults) and look again
                    self._started.set()
                except (TimeoutError, KafkaException):  # Kafka slow or away: readers wait (503), not see a part of it
                    pass
                self._stopping.wait(1)
            self._apply()
            self._started.set()
            while not self._stopping.is_set():
                if self._follower.poll(timeout_s=POLL_INTERVAL_S):
                    self._apply()
        except BaseException as exc:  # noqa: BLE001 - kept: readers answer 503 rather than stale data forever
            self.failure = exc
            self._started.set()
        finally:
            self._follower.close()

    def _apply(self) -> None:
        records = dict(self._follower.values)
        with self._lock:
            self._records = records

    @property
    def loaded(self) -> bool:
        """The topic was read to its end once (and the follower did not fail): reads and checks can answer."""
        return self._started.is_set() and self.failure is None

    async def ready(self, timeout_s: float = 10.0) -> None:
        self.start()
        if not self._started.is_set():
            await run_in_threadpool(self._started.wait, timeout_s)
        if not self.loaded:
            raise self.unavailable()

    def unavailable(self) -> ApiError:
        return ApiError(
            503,
            [FieldError(self.what, "available", f"the {self.what.replace('_', ' ')} are not loaded yet; retry")],
            headers={"Retry-After": "1"},
        )

    @property
    def records(self) -> dict[str, T]:
        """The latest record of every key (deleted ones included)."""
        with self._lock:
            return self._records

    async def publish(self, bus: CommandBus, items: list[tuple[str, bytes, Callable[[T | None], bool]]], timeout_s: float = 10.0) -> None:
        """Send (key, value, is-applied test) records; return once this process has read every one back."""
        await bus.send([Record(self.topic, key, value) for key, value, _ in items])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = self.records
            if all(applied(current.get(key)) for key, _, applied in items):
                return
            await asyncio.sleep(0.05)

    def stop_following(self) -> None:
        self._stopping.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop following; a thread still waiting on Kafka after `timeout_s` is left to end alone (a daemon)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
