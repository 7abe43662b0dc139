"""The webhook dispatcher: profile-changes → a signed POST to every webhook whose filter matches the change.

    webhooks (compacted) ─► Dispatcher: one WebhookWorker per live webhook
    profile-changes ─► WebhookWorker (consumer group `<prefix>-webhook-<id>`) ─► POST, retried ─► webhook-deliveries

Each webhook has a consumer group of its own, so a slow or dead receiver holds up its own deliveries and
nothing else: its group lags (as any consumer group's lag is watched), every other webhook's goes on. A new
webhook starts at the changes published since it was created.

A worker takes a batch, delivers it (changes of one person in their order, up to `webhook_concurrency`
persons at once), records every attempt on `webhook-deliveries`, and commits the batch's offsets only once
each of its changes was delivered or dead-lettered and those records were acknowledged: a crash or restart
delivers the rest again (at least once: receivers drop repeats by the `Idempotency-Key` header, the change
id). Retries: tenacity, exponential backoff with jitter, `webhook_max_attempts` tries; the last failure is
recorded `dead_lettered` with the change itself. Any 2xx is delivered; anything else, a timeout or a refused
connection is a failed attempt. Logs name the webhook, the change id and the outcome, never a secret or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from schemas.compacted import CompactedFollower
from schemas.config import FootfallSettings
from schemas.profile_changes import ProfileChange
from schemas.webhooks import (
    CHANGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryAttempt,
    WebhookDefinition,
    live_webhooks,
    matches,
    signature,
)

log = logging.getLogger(__name__)

ATTEMPTS = Counter("footfall_webhook_attempts_total", "Delivery attempts, by outcome (delivered, failed, dead_lettered)", ["status"])
DELIVERY_SECONDS = Histogram(
    "footfall_webhook_request_seconds", "Time of one delivery attempt's POST", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
)
WEBHOOKS = Gauge("footfall_webhooks_active", "Webhooks this dispatcher delivers to")


class DeliveryFailed(Exception):
    """One attempt did not get a 2xx (retried until the last try)."""


def group_of(settings: FootfallSettings, webhook_id: str) -> str:
    return f"{settings.topic_prefix}-webhook-{webhook_id}"


class WebhookWorker:
    """One webhook's deliveries. Its Kafka calls run on a thread of its own (a consumer is used from one thread)."""

    def __init__(
        self,
        settings: FootfallSettings,
        webhook_id: str,
        current: Callable[[], WebhookDefinition | None],
        client: httpx.AsyncClient,
        producer: Producer,
    ):
        self.settings = settings
        self.webhook_id = webhook_id
        self.current = current  # the definition in force now (URL, secret and filter may change while it runs)
        self.client = client
        self.producer = producer
        self.topic = settings.topics.profile_changes.name
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"webhook-{webhook_id}")
        self.held: list[Message] = []  # fetched while the partitions were paused: the next batch's first
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group_of(settings, webhook_id),
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                # Kept by `_keep_alive` however long a batch's retries take.
                "max.poll.interval.ms": int(
                    max(settings.webhook_max_poll_interval_seconds, settings.consumer_session_timeout_seconds) * 1000
                ),
                "session.timeout.ms": int(settings.consumer_session_timeout_seconds * 1000),
            }
        )
        self.stopping = asyncio.Event()
        self.delivered = 0

    async def _kafka(self, call, *args):
        return await asyncio.get_running_loop().run_in_executor(self.thread, call, *args)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A webhook with no committed position starts at the changes published since it was created."""
        definition = self.current()
        committed = consumer.committed(partitions, timeout=10)
        since = int(definition.created_at.timestamp() * 1000) if definition is not None else 0
        fresh = [TopicPartition(p.topic, p.partition, since) for p in committed if p.offset < 0]
        found = {(p.topic, p.partition): p.offset for p in consumer.offsets_for_times(fresh, timeout=10)} if fresh else {}
        for p in committed:
            if p.offset < 0:
                p.offset = found.get((p.topic, p.partition), OFFSET_END)
                if p.offset < 0:  # nothing published since: from the end
                    p.offset = OFFSET_END
        consumer.assign(committed)

    async def run(self) -> None:
        await self._kafka(lambda: self.consumer.subscribe([self.topic], on_assign=self._on_assign))
        try:
            while not self.stopping.is_set():
                messages = self.held + await self._kafka(self.consumer.consume, 500, 0.5)
                self.held = []
                await self.handle(messages)
        finally:
            await self._kafka(self.consumer.close)
            self.thread.shutdown(wait=False)

    async def handle(self, messages: list[Message]) -> None:
        """Deliver a batch, then commit it."""
        by_person: dict[str, list[ProfileChange]] = defaultdict(list)
        offsets: dict[int, int] = {}
        for message in messages:
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("webhook %s: consumer: %s", self.webhook_id, message.error().str())
                continue
            offsets[message.partition()] = message.offset() + 1
            try:
                change = ProfileChange.model_validate_json(message.value() or b"")
            except ValidationError:
                log.warning(
                    "webhook %s: skipped an unreadable change at %s[%s]@%s",
                    self.webhook_id,
                    self.topic,
                    message.partition(),
                    message.offset(),
                )
                continue
            definition = self.current()
            if definition is not None and matches(definition, change):
                by_person[change.person_id].append(change)
        if not offsets:
            return
        limit = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def in_order(changes: list[ProfileChange]) -> None:
            async with limit:
                for change in changes:
                    await self.deliver(change)

        delivering = asyncio.gather(*(in_order(changes) for changes in by_person.values()))
        keeping = asyncio.create_task(self._keep_alive(delivering))
        try:
            await delivering
        finally:
            await keeping
        if await self._kafka(self.producer.flush, 30) > 0:
            raise RuntimeError("webhook-deliveries did not acknowledge the attempts; the batch is delivered again")
        try:
            await self._kafka(
                lambda: self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()], asynchronous=False)
            )
        except KafkaException as exc:  # rebalanced meanwhile: the next owner delivers again (same change ids)
            log.warning("webhook %s: offset commit refused (%s)", self.webhook_id, exc)

    async def _keep_alive(self, delivering: asyncio.Future, interval_s: float = 1.0) -> None:
        """While a batch's retries run (minutes, with a dead receiver), stay in the group: pause the partitions and
        keep polling (a poll that fetches nothing still counts for max.poll.interval.ms and serves rebalances)."""
        paused = False
        while not delivering.done():
            await asyncio.wait({delivering}, timeout=interval_s)
            if delivering.done():
                break
            paused = True
            self.held += await self._kafka(self._poll_paused)
        if paused:
            await self._kafka(lambda: self.consumer.resume(self.consumer.assignment()))

    def _poll_paused(self) -> list[Message]:
        self.consumer.pause(self.consumer.assignment())  # a partition assigned meanwhile is paused too
        return self.consumer.consume(100, 0)

    async def deliver(self, change: ProfileChange) -> None:
        """POST the change until a 2xx or the last try; every attempt recorded."""
        settings = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.webhook_max_attempts),
            wait=wait_exponential_jitter(
                initial=settings.webhook_backoff_seconds, max=settings.webhook_backoff_max_seconds, jitter=settings.webhook_backoff_seconds
            ),
            retry=retry_if_exception_type(DeliveryFailed),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.attempt(change, attempt.retry_state.attempt_number)
        except DeliveryFailed:
            pass  # recorded dead_lettered by its last attempt
        except RuntimeError:  # the webhook was deleted meanwhile: nothing to deliver to
            return

    async def attempt(self, change: ProfileChange, number: int) -> None:
        definition = self.current()
        if definition is None:
            raise RuntimeError(f"webhook {self.webhook_id} is gone")
        body = change.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "footfall-webhooks/1",
            SIGNATURE_HEADER: signature(definition.secret, body),
            TIMESTAMP_HEADER: str(int(time.time())),
            CHANGE_ID_HEADER: change.change_id,
            "Idempotency-Key": change.change_id,
            "X-Footfall-Webhook": self.webhook_id,
            "X-Footfall-Attempt": str(number),
        }
        started = time.perf_counter()
        at = datetime.now(UTC)
        status, error = 0, ""
        try:
            answer = await self.client.post(definition.url, content=body, headers=headers, timeout=self.settings.webhook_timeout_seconds)
            status = answer.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        seconds = time.perf_counter() - started
        DELIVERY_SECONDS.observe(seconds)
        last = number >= self.settings.webhook_max_attempts
        outcome = "delivered" if not error else "dead_lettered" if last else "failed"
        record = DeliveryAttempt(
            webhook_id=self.webhook_id,
            change_id=change.change_id,
            person_id=change.person_id,
            kind=change.kind,
            attempt=number,
            status=outcome,
            http_status=status,
            error=error,
            duration_ms=round(seconds * 1000, 2),
            at=at,
            url=definition.url,
            change=change if outcome == "dead_lettered" else None,
        )
        self.producer.produce(self.settings.topics.webhook_deliveries.name, record.model_dump_json().encode(), self.webhook_id)
        self.producer.poll(0)
        ATTEMPTS.labels(status=outcome).inc()
        if outcome == "delivered":
            self.delivered += 1
            log.debug("webhook %s: change %s delivered (attempt %d)", self.webhook_id, change.change_id, number)
            return
        log.info("webhook %s: change %s attempt %d %s (%s)", self.webhook_id, change.change_id, number, outcome, error)
        raise DeliveryFailed(error)


class Dispatcher:
    """Follows the webhook definitions and keeps one worker per live webhook."""

    def __init__(self, settings: FootfallSettings):
        self.settings = settings
        self.definitions = CompactedFollower(
            settings.kafka_bootstrap_servers, settings.topics.webhooks.name, WebhookDefinition.model_validate_json
        )
        self.live: dict[str, WebhookDefinition] = {}
        self.workers: dict[str, tuple[WebhookWorker, asyncio.Task]] = {}
        self.retiring: set[asyncio.Task] = set()  # workers of deleted webhooks, finishing their batch
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True})
        self.stopping = asyncio.Event()
        self.caught_up = False
        self.failure: BaseException | None = None

    def readiness(self) -> tuple[bool, dict[str, str]]:
        ready = self.caught_up and self.failure is None and not self.stopping.is_set()
        return ready, {"definitions": "loaded" if self.caught_up else "loading", "webhooks": str(len(self.workers))}

    def _follow(self) -> None:
        try:
            if not self.caught_up:
                self.definitions.catch_up(timeout_s=30)
                self.caught_up = True
            else:
                self.definitions.poll(timeout_s=0.0)
        except LookupError:  # no webhooks topic yet: no webhooks
            self.caught_up = True
        except TimeoutError as exc:
            log.warning("webhook definitions: %s", exc)
        self.live = live_webhooks(self.definitions.values.values())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-definitions") as follower:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                try:
                    while not self.stopping.is_set():
                        await loop.run_in_executor(follower, self._follow)
                        self._reconcile(client)
                        for webhook_id, (_, task) in list(self.workers.items()):
                            if task.done() and not task.cancelled() and task.exception() is not None:
                                self.failure = task.exception()
                                raise RuntimeError(f"webhook {webhook_id}'s worker stopped") from self.failure
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.stopping.wait(), 0.5)
                finally:
                    await self._stop_workers()
                    await loop.run_in_executor(follower, self.definitions.close)
                    self.producer.flush(10)

    def _reconcile(self, client: httpx.AsyncClient) -> None:
        self.retiring = {task for task in self.retiring if not task.done()}
        for webhook_id in self.live.keys() - self.workers.keys():
            worker = WebhookWorker(
                self.settings, webhook_id, lambda webhook_id=webhook_id: self.live.get(webhook_id), client, self.producer
            )
            self.workers[webhook_id] = (worker, asyncio.create_task(worker.run(), name=f"webhook-{webhook_id}"))
            log.info("webhook %s: delivering (group %s)", webhook_id, group_of(self.settings, webhook_id))
        for webhook_id in self.workers.keys() - self.live.keys():
            worker, task = self.workers.pop(webhook_id)
            worker.stopping.set()
            self.retiring.add(task)
            log.info("webhook %s: deleted, stopped", webhook_id)
        WEBHOOKS.set(len(self.workers))

    async def _stop_workers(self, grace_s: float = 10.0) -> None:
        """Let each worker finish its batch (a delivery waiting for a retry is cut short after `grace_s`: its
        batch is not committed, so it is delivered again after the restart, with the same change id)."""
        tasks = {task for _, task in self.workers.values()} | self.retiring
        for worker, _ in self.workers.values():
            worker.stopping.set()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()
