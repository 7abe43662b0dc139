"""The machinery footfall's agents run on: what faust leaves undone or does unsafely, in one place.

- stop on failure: an agent that raises stops the worker before faust acknowledges its message (a lost event);
- the continuity guard and the stall watch (continuity.py), per record;
- sends straight to faust's producer, enveloped per destination partition per batch (schemas/envelope.py),
  with a failed delivery stopping the worker before a commit covers it;
- table writes whose changelog records it sends itself (DirectWrites), and the current event a table writes by;
- offset lookups with clients of its own;
- reading a record into its events, refusals to the dead-letter topic;
- the end of a recovery seeks never-committed partitions to their start (SeekUncommittedToStart).

The topology (processors/app.py) and each agent's work (processors/steps.py) use it; neither needs to know why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from faust.serializers import codecs
from faust.streams import _current_event as _handled_event  # the ContextVar faust's tables read
from faust.tables import TableManager
from faust.tables.recovery import Recovery

from processors import metrics
from processors.continuity import OffsetContinuity, StallWatch, resume_offset
from processors.records import EventSlices, Handed, Keyed, Refusal, read_record
from schemas.bad_rows import partition_mismatch, poison_message
from schemas.config import FootfallSettings
from schemas.envelope import pack_by_partition
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
Record = tuple[bytes, bytes]
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
# The exit status of a worker stopped by an unexpected error (EX_SOFTWARE): its supervisor restarts it.
EXIT_AGENT_FAILED = 70
# How long a worker may wait to learn where a partition resumes before it gives up (and is restarted).
OFFSET_LOOKUP_TIMEOUT_S = 15.0


def use_uvloop() -> None:
    """Run the worker's event loop on uvloop: faust's per-record tasks and callbacks cost less there."""
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@contextlib.contextmanager
def handling(event: faust.types.EventT) -> Iterator[None]:
    """Make `event` the one being handled in this task: a table writes its changelog partition (and picks its
    RocksDB shard) by it. faust sets it per event in stream iteration, which batch processing leaves behind."""
    token = _handled_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _handled_event.reset(token)


def stop_worker(reason: str, *args, cause: str = "agent-failed") -> None:
    """Exit at once with EXIT_AGENT_FAILED: nothing more is acknowledged or committed (see stop_worker_on_failure).
    `cause` is what the next run counts in footfall_processor_restarts_total."""
    log.critical(reason, *args)
    metrics.record_exit(cause)
    logging.shutdown()
    os._exit(EXIT_AGENT_FAILED)


def fetch_state_of(app: faust.App, tp) -> str:
    """What faust and aiokafka hold for a stalled partition, for its log line: the stall's cause is still open
    (RELIABILITY.md), and this says whether faust stopped asking for the partition or aiokafka stopped fetching it.
    Reads the libraries' private state from another thread, so it is a best-effort snapshot."""
    try:
        consumer = app.consumer
        in_faust = [
            name
            for name, tps in (
                ("active", consumer._active_partitions),
                ("paused", consumer._paused_partitions),
                ("buffered", consumer._buffered_partitions),
            )  # fmt: skip
            if tps is not None and tp in tps
        ]
        state = consumer._thread._ensure_consumer()._subscription.subscription.assignment.state_value(
            TopicPartition(tp.topic, tp.partition)
        )
        fetching = (
            f"status={state._status.name} position={state._position} highwater={state.highwater} paused={state.paused}"
            if state is not None
            else "not assigned in aiokafka"
        )
        return f"{tp.topic}[{tp.partition}]: faust {'/'.join(in_faust) or 'none'}, flow {consumer.flow_active}; aiokafka {fetching}"
    except Exception as exc:  # noqa: BLE001 - a diagnostic must never be the reason a stop fails
        return f"{tp.topic}[{tp.partition}]: fetch state unknown ({type(exc).__name__})"


def stop_worker_on_failure(agent):
    """faust acknowledges the message an agent was handling when the agent raises (its stream's `finally`),
    and then restarts the agent: the message's outputs never leave, yet its offset is committed. That is a
    lost event. So an unexpected error stops the worker at once, before anything else runs on the event
    loop (nothing acknowledged, nothing committed); the restarted worker takes the messages again.
    Poison messages never get here: they are dead-lettered (Runtime.events_of)."""

    @functools.wraps(agent)
    async def guarded(stream):
        try:
            await agent(stream)
        except Exception:
            log.exception("agent %s failed", agent.__name__)
            stop_worker("agent %s failed; stopping the worker without committing", agent.__name__)

    return guarded


def stop_on_failed_delivery(delivery: asyncio.Future) -> None:
    """A record Kafka did not take stops the worker before a commit can cover the message that made it.
    The producer resolves a batch's records before its flush (the one before every commit) resumes, so this
    runs first."""
    if delivery.cancelled() or delivery.exception() is not None:
        reason = "cancelled" if delivery.cancelled() else type(delivery.exception()).__name__
        stop_worker("a send to Kafka failed for good (%s); stopping the worker without committing", reason, cause="send-failed")


class StopOnSendError(faust.Sensor):
    """faust only logs a send that failed for good, and its next commit covers the message that made it:
    the output is lost. A failed send therefore stops the worker before that commit can run (the failed
    message's callbacks run before the commit's flush resumes); the restarted worker redoes the work."""

    def on_send_error(self, producer, exc: BaseException, state) -> None:
        stop_worker("a send to Kafka failed for good (%s); stopping the worker without committing", type(exc).__name__, cause="send-failed")


class SeekUncommittedToStart(Recovery):
    """faust keeps fetching while a worker's stream partitions are paused for recovery, and drops what it
    fetches for them: their positions move past records nobody handled. The end of recovery repairs that by
    seeking each partition back to its committed offset, but a partition that never had a commit (a new
    topic, or a worker killed before its first commit) is not sought at all, so its records are skipped.
    The continuity guard then stopped every successor of a killed worker in turn (RELIABILITY.md).
    Here those partitions are sought to their start, where a worker without a commit begins anyway."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        await self._seeking_uncommitted_to_start(super().on_recovery_completed(generation_id))

    async def _resume_streams(self, generation_id: int = 0) -> None:
        await self._seeking_uncommitted_to_start(super()._resume_streams(generation_id))

    async def _seeking_uncommitted_to_start(self, step) -> None:
        consumer = self.app.consumer
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed_or_start():
            committed = await seek_to_committed()
            never = [
                TopicPartition(tp.topic, tp.partition)
                for tp in consumer.assignment()
                if not self._is_changelog_tp(tp) and not committed.get(tp)
            ]
            if never:
                await consumer._thread.seek_to_beginning(*never)  # faust exposes it on its consumer thread only
            return committed

        consumer.seek_to_committed = seek_to_committed_or_start  # type: ignore[method-assign]  # this step only
        try:
            await step
        finally:
            del consumer.seek_to_committed


class SeekingUncommittedToStart(TableManager):
    """faust's table manager with SeekUncommittedToStart as its recovery (faust's TableManager setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekUncommittedToStart(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class Watermarks:
    """Per-partition event-time watermarks that keep moving with the wall clock while a partition is idle,
    so idle sessions close even when no more events arrive."""

    def __init__(self) -> None:
        self._event_time: dict[int, datetime] = {}
        self._seen_at: dict[int, float] = {}

    def observe(self, partition: int, event_time: datetime) -> datetime:
        self._seen_at[partition] = time.monotonic()
        if event_time > self._event_time.get(partition, _NEVER):
            self._event_time[partition] = event_time
        return self._event_time[partition]

    def current(self, partition: int) -> datetime:
        if partition not in self._event_time:
            return _NEVER
        idle = time.monotonic() - self._seen_at[partition]
        return self._event_time[partition] + timedelta(seconds=idle)


class PartitionOffsets:
    """Committed, log-start and log-end offsets, looked up with clients of its own on the worker's event loop
    (cancellable, so a lookup can be bounded), not through faust's consumer thread, which answers only
    between its fetches."""

    def __init__(self, bootstrap_servers: str, group_id: str):
        self.bootstrap_servers, self.group_id = bootstrap_servers, group_id
        self._clients_started: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
        self._starting = asyncio.Lock()  # agents ask concurrently; a client is usable only once started

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        async with self._starting:
            if self._clients_started is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
                reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False)
                try:
                    await admin.start()
                    await reader.start()
                except BaseException:  # the broker away, or a lookup's bound reached: the next call starts afresh
                    await asyncio.gather(admin.close(), reader.stop(), return_exceptions=True)
                    raise
                self._clients_started = admin, reader
        return self._clients_started

    async def committed(self, tps) -> dict:
        """The group's committed offset per partition (absent: never committed)."""
        admin, _ = await self._clients()
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        found = await admin.list_consumer_group_offsets(self.group_id, partitions=list(partitions))
        return {partitions[p]: meta.offset for p, meta in found.items() if p in partitions and meta.offset >= 0}

    async def ends(self, tps) -> dict:
        _, reader = await self._clients()
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        return {partitions[p]: end for p, end in (await reader.end_offsets(list(partitions))).items()}

    async def resume_at(self, tp) -> int:
        """Where a new owner of `tp` had to start: the group's committed offset, else the log start."""
        _, reader = await self._clients()
        partition = TopicPartition(tp.topic, tp.partition)
        log_start = (await reader.beginning_offsets([partition]))[partition]
        return resume_offset((await self.committed([tp])).get(tp), log_start)


class Runtime:
    """One worker's machinery around its agents (see the module docstring)."""

    def __init__(
        self, app: faust.App, settings: FootfallSettings, guarded_topics: AbstractSet[str], watched_topics: AbstractSet[str] = frozenset()
    ):
        """`guarded_topics`: checked record by record for skips (continuity.py) and watched for stalls;
        `watched_topics`: only watched for stalls (a compacted topic's offsets have gaps, so continuity cannot hold)."""
        self.app, self.settings, self.limits = app, settings, settings.envelope_limits
        self.continuity = OffsetContinuity()
        self.offsets = PartitionOffsets(settings.kafka_bootstrap_servers, app.conf.id)
        self.stall_watch = StallWatch()
        self.idle_generation_logged: int | None = None
        self.guarded_topics = guarded_topics
        self.watched_topics = guarded_topics | watched_topics
        app.sensors.add(StopOnSendError())
        # faust logs a failed send with the whole message at warning level: personal data. StopOnSendError says it.
        logging.getLogger("faust.topics").setLevel(logging.ERROR)
        app.timer(interval=settings.processor_stall_seconds / 2)(self.watch_for_stalls)

    # -- reading ------------------------------------------------------------------------------------------

    async def events_of(
        self, handed: faust.types.EventT, spec: TopicSpec, decode: Callable[[bytes], T], key_of: Callable[[T], bytes], schema: str
    ) -> list[Keyed[T]]:
        """The events of a record (an envelope or a single event) that its partition may handle, after checking
        it follows the last record handled; the rest go to the dead-letter topic, each alone with its reason."""
        if spec.name in self.guarded_topics:
            await self.verify_contiguous(handed)
        message = handed.message
        read = read_record(handed.key, handed.value, message.headers, message.partition, spec.partitions, decode, key_of, schema)
        await self.dead_letter(read.refusals, schema, origin=f"{message.topic}[{message.partition}]@{message.offset}")
        return read.events

    async def read_in_slices(
        self,
        records: Sequence[faust.types.EventT],
        spec: TopicSpec,
        decode: Callable[[bytes], T],
        key_of: Callable[[T], bytes],
        schema: str,
    ) -> AsyncIterator[list[Handed[faust.types.EventT]]]:
        """The events of `records` (events_of each) in slices of at most processor_slice_events, whatever the
        records hold, with the event loop free between slices; the caller acknowledges the records after the last."""
        slices: EventSlices[faust.types.EventT] = EventSlices(self.settings.processor_slice_events)
        for record in records:
            for handed in slices.add(record, record.message.partition, await self.events_of(record, spec, decode, key_of, schema)):
                yield handed
                await self.let_others_run()
        if rest := slices.rest():
            yield rest

    @staticmethod
    async def let_others_run() -> None:
        """Give the event loop to heartbeats, timers and the other agents between two slices of work."""
        await asyncio.sleep(0)

    async def dead_letter(self, refusals: Sequence[Refusal], schema: str, origin: str) -> None:
        """Each refused event alone, as a typed bad row: partition_mismatch for an event whose key belongs to
        another partition, poison_message for one that cannot be read."""
        for refusal in refusals:
            bad_row = partition_mismatch if refusal.field == "envelope_partition" else poison_message
            await self.send(
                self.settings.topics.dead_letter.name,
                refusal.key,
                bad_row("processor", refusal.payload, refusal.field, refusal.reason, origin),
            )
            metrics.POISON_MESSAGES.labels(schema=schema).inc()

    async def verify_contiguous(self, event: faust.types.EventT) -> None:
        """Stop the worker before it acknowledges a record that follows records it skipped (continuity.py)."""
        message = event.message
        resume_at = None
        if self.continuity.starts_generation(message.tp, message.generation_id):
            try:
                resume_at = await asyncio.wait_for(self.offsets.resume_at(message.tp), OFFSET_LOOKUP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - unverifiable is treated as unsafe
                stop_worker(
                    "cannot tell where %s resumes (%s: %s); stopping the worker without committing",
                    message.tp,
                    type(exc).__name__,
                    exc,
                    cause="continuity",
                )
            log.info("%s: generation %s starts at offset %s (resumes at %s)", message.tp, message.generation_id, message.offset, resume_at)
        if skip := self.continuity.observe(message.tp, message.generation_id, message.offset, resume_at):
            stop_worker(
                "%s; stopping the worker without committing, so that its successor resumes from the last commit", skip, cause="continuity"
            )

    async def watch_for_stalls(self) -> None:
        """Restart a worker that owns waiting records and handles none of them (continuity.StallWatch)."""
        app = self.app
        owned = [tp for tp in app.assignor.assigned_actives() if tp.topic in self.watched_topics]
        generation = app.consumer_generation_id
        if app.rebalancing or app.in_recovery:  # a long recovery handles no records, and is no stall
            return
        if not owned:
            if self.idle_generation_logged != generation:
                # Legitimate with more workers than partitions; otherwise a sign the leader assigned from stale metadata.
                log.info("generation %s: this worker owns no partition of %s", generation, ", ".join(sorted(self.watched_topics)))
                self.idle_generation_logged = generation
            return
        try:
            committed, ends = await asyncio.wait_for(
                asyncio.gather(self.offsets.committed(owned), self.offsets.ends(owned)), OFFSET_LOOKUP_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - a broker away is not a stall; the next check tries again
            log.warning("stall check skipped: %s", type(exc).__name__)
            return
        if app.rebalancing or generation != app.consumer_generation_id:
            return
        positions = {tp: self.continuity.position(tp, generation) or committed.get(tp, 0) for tp in owned}
        metrics.set_consumer_lag(positions, ends)
        if stalled := self.stall_watch.check(generation, positions, ends):
            stop_worker(
                "records wait in %s but this worker has handled none of them for %.0f s; stopping it so that it rejoins (%s)",
                ", ".join(f"{tp.topic}[{tp.partition}]@{positions[tp]}" for tp in stalled),
                self.settings.processor_stall_seconds / 2,
                "; ".join(fetch_state_of(app, tp) for tp in stalled),
                cause="stall",
            )

    # -- writing ------------------------------------------------------------------------------------------

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Hand a record straight to faust's producer, whose flush before every commit covers it. faust's
        Topic.send adds per-record bookkeeping that cost more than the record's own work."""
        delivery = await self.app.producer.send(topic, key, value, partition, None, headers)
        delivery.add_done_callback(stop_on_failed_delivery)

    async def send_enveloped(self, spec: TopicSpec, records: Sequence[Record]) -> None:
        """A batch's records for `spec` as one envelope per destination partition (more when the limits say so),
        each partition the one its events' keys belong to, in order."""
        for partition, envelope in pack_by_partition(records, spec.partitions, self.limits):
            await self.send(spec.name, None, envelope.value, partition, envelope.headers)

    def direct_writes(self, table: faust.Table) -> DirectWrites:
        """`table` as a plain mapping whose changelog records this runtime sends itself (see DirectWrites)."""
        return DirectWrites(table)

    async def send_changelog(self, writes: DirectWrites) -> None:
        """Hand the changelog records of `writes` straight to the producer, in order, as `send` hands an output:
        the commit's flush covers them, a failed delivery stops the worker, and the store keeps its persisted
        offset once Kafka has a record, as faust's Collection._on_changelog_sent keeps it."""
        table, pending = writes.table, writes.take_pending()
        topic = table.changelog_topic.get_topic_name()
        for partition, key, value in pending:
            raw_key = codecs.dumps(table.key_serializer, key)
            raw_value = None if value is None else codecs.dumps(table.value_serializer, value)
            delivery = await self.app.producer.send(topic, raw_key, raw_value, partition, None, None)
            delivery.add_done_callback(stop_on_failed_delivery)
            delivery.add_done_callback(functools.partial(_keep_persisted_offset, table))


class DirectWrites(MutableMapping):
    """A faust table as a plain mapping for the pure steps: reads and writes go to its store at once, and each
    write's changelog record waits in order until Runtime.send_changelog hands it to the producer.

    faust's own table writes queue their changelog records in a buffer that hands them over one per turn of the
    event loop, and stops every stream while it holds more than 100: a slice's device states or an identity
    command's keys (hundreds to thousands) took seconds there on a loaded machine. A write takes the partition
    of the event being handled (`handling`), as faust's does, and the store is written as faust writes it."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self._pending: list[tuple[int, Any, Any]] = []

    def __getitem__(self, key: Any) -> Any:
        return self.table.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.table.data[key] = value
        self._pending.append((_handled_partition(), key, value))

    def __delitem__(self, key: Any) -> None:
        del self.table.data[key]
        self._pending.append((_handled_partition(), key, None))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def take_pending(self) -> list[tuple[int, Any, Any]]:
        pending, self._pending = self._pending, []
        return pending


def _handled_partition() -> int:
    event = _handled_event.get(None)
    event = event() if event is not None else None
    if event is None:
        raise RuntimeError("a table is written only while an event is handled (see `handling`)")
    return event.message.partition


def _keep_persisted_offset(table: faust.Table, delivery: asyncio.Future) -> None:
    """What faust's Collection._on_changelog_sent does outside transactions: the store (RocksDB) remembers the
    changelog offset it holds data up to, so recovery reads only what came after."""
    if not delivery.cancelled() and delivery.exception() is None:
        sent = delivery.result()
        table.data.set_persisted_offset(sent.topic_partition, sent.offset)
