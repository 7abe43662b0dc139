"""The faust app: footfall's stream topology, readable in one place (as a Kafka Streams topology is).

    raw ─► sessionize ─► sessioned (re-keyed by distinct id) ─► stamp_person ─► enriched
      │     [device-sessions]  │  (only when the distinct id is not the device key; otherwise the
      │                        │   event is stamped in place and goes straight to enriched)
      │                        ├─► sessions (updates, merges)       ▲ [person-of]
      │                        └─► identity-commands (1 partition)  │
      │                               └─► resolve_identities ─► identities ─► learn_persons
      │                                   [identity-state]    └─► persons (merges, flags)
    session-ticks ─► close_idle_sessions  (a timer's tick per partition: ends idle sessions)
    anything unreadable ─► dead-letter

Each table is co-partitioned with the topic that writes it, so a key's state lives where its events
arrive. The identity sequencer runs on one partition: every merge is decided in one order, wherever
the merged ids' events live (ARCHITECTURE.md, "identity").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition
from faust.streams import _current_event as _handled_event  # the ContextVar faust's tables read
from pydantic import ValidationError

from processors import metrics
from processors.continuity import OffsetContinuity, StallWatch, resume_offset
from processors.identity import IdentityResolver, commands_for
from processors.records import Keyed, read_record
from processors.sessionizer import DeviceState, SessionizerConfig, assign, close_expired
from schemas.bad_rows import identity_warning, partition_mismatch, poison_message
from schemas.config import FootfallSettings
from schemas.events import EnrichedEvent, RawEvent
from schemas.identity import DistinctIdMapping, IdentityCommand, person_id_for

log = logging.getLogger(__name__)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
# The exit status of a worker stopped by an unexpected error (EX_SOFTWARE): its supervisor restarts it.
EXIT_AGENT_FAILED = 70
# How long a worker may wait to learn where a partition resumes before it gives up (and is restarted).
OFFSET_LOOKUP_TIMEOUT_S = 15.0


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


def stop_worker_on_failure(agent):
    """faust acknowledges the message an agent was handling when the agent raises (its stream's `finally`),
    and then restarts the agent: the message's outputs never leave, yet its offset is committed. That is a
    lost event. So an unexpected error stops the worker at once, before anything else runs on the event
    loop (nothing acknowledged, nothing committed); the restarted worker takes the messages again.
    Poison messages never get here: `decode_or_dead_letter` dead-letters them."""

    @functools.wraps(agent)
    async def guarded(stream):
        try:
            await agent(stream)
        except Exception:
            log.exception("agent %s failed", agent.__name__)
            stop_worker("agent %s failed; stopping the worker without committing", agent.__name__)

    return guarded


def stamped_json(event: EnrichedEvent, known: dict | None) -> bytes:
    """The event stamped with the person known now (or the one its distinct id would found), as the JSON sent on."""
    person_id = known["person_id"] if known else person_id_for(event.distinct_id)
    return EnrichedEvent.model_construct(**{**event.__dict__, "person_id": person_id}).model_dump_json().encode()


def stop_on_failed_delivery(delivery: asyncio.Future) -> None:
    """A record Kafka did not take stops the worker before a commit can cover the message that made it.
    The producer resolves a batch's records before its flush (the one before every commit) resumes, so this
    runs first."""
    if delivery.cancelled() or delivery.exception() is not None:
        reason = "cancelled" if delivery.cancelled() else type(delivery.exception()).__name__
        stop_worker("a send to Kafka failed for good (%s); stopping the worker without committing", reason, cause="send-failed")


def device_key_of(event: RawEvent) -> bytes:
    """The key a raw event's device state lives under (the collector's record key)."""
    return event.device_key.encode()


def distinct_key_of(event: EnrichedEvent) -> bytes:
    """The key a sessioned event is re-keyed by, to meet its person-of entry."""
    return event.distinct_id.encode()


def command_key_of(command: IdentityCommand) -> bytes:
    return (command.distinct_id or command.user_id or "").encode()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a key: where its state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


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


class StopOnSendError(faust.Sensor):
    """faust only logs a send that failed for good, and its next commit covers the message that made it:
    the output is lost. A failed send therefore stops the worker before that commit can run (the failed
    message's callbacks run before the commit's flush resumes); the restarted worker redoes the work."""

    def on_send_error(self, producer, exc: BaseException, state) -> None:
        stop_worker("a send to Kafka failed for good (%s); stopping the worker without committing", type(exc).__name__,
                    cause="send-failed")


def create_app(settings: FootfallSettings, sessionizer: SessionizerConfig | None = None) -> faust.App:
    sessionizer = sessionizer or SessionizerConfig(
        gap=timedelta(seconds=settings.session_gap_seconds),
        allowed_lateness=timedelta(seconds=settings.allowed_lateness_seconds),
    )
    topics = settings.topics
    app = faust.App(
        f"{settings.topic_prefix}-processor",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store=settings.processor_store,
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Let sends batch up: with acks=all, one produce request per message is what bounds a worker.
        producer_linger=0.02,
        producer_max_batch_size=256 * 1024,
        web_enabled=False,
        datadir=str(settings.data_dir / "processor"),
        # A worker that dies is noticed within seconds, so its partitions move on quickly.
        broker_session_timeout=settings.consumer_session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout_seconds / 4),
        consumer_group_instance_id=settings.processor_instance_id,
    )

    app.sensors.add(StopOnSendError())
    # faust logs a failed send with the whole message at warning level: personal data. StopOnSendError says it.
    logging.getLogger("faust.topics").setLevel(logging.ERROR)

    def topic(spec):
        return app.topic(spec.name, key_serializer="raw", value_serializer="raw", partitions=spec.partitions)

    raw, sessioned, enriched = topic(topics.raw), topic(topics.sessioned), topic(topics.enriched)
    sessions, identities, persons = topic(topics.sessions), topic(topics.identities), topic(topics.persons)
    identity_commands, dead_letter = topic(topics.identity_commands), topic(topics.dead_letter)
    # Internal: faust declares it (co-partitioned with raw, so a tick lands where that partition's sessions live).
    ticks = app.topic(
        f"{settings.topic_prefix}.session-ticks", key_serializer="raw", value_serializer="raw",
        partitions=topics.raw.partitions, internal=True, retention=timedelta(hours=1),
    )

    # faust picks each changelog's serializers from key_type/value_type: bytes → raw, anything else → JSON.
    # Keys stay bytes where they are Kafka keys; the resolver's own keys are strings (JSON round-trips them).
    device_sessions = app.Table("device-sessions", partitions=topics.raw.partitions, key_type=bytes, value_type=bytes)
    person_of = app.Table("person-of", partitions=topics.identities.partitions, key_type=bytes)
    identity_state = app.Table("identity-state", partitions=1)
    watermarks = Watermarks()
    continuity = OffsetContinuity()
    offsets = PartitionOffsets(settings.kafka_bootstrap_servers, app.conf.id)
    guarded_topics = {topics.raw.name, topics.sessioned.name, topics.identity_commands.name}

    async def verify_contiguous(event: faust.types.EventT) -> None:
        """Stop the worker before it acknowledges a record that follows records it skipped (continuity.py)."""
        message = event.message
        resume_at = None
        if continuity.starts_generation(message.tp, message.generation_id):
            try:
                resume_at = await asyncio.wait_for(offsets.resume_at(message.tp), OFFSET_LOOKUP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - unverifiable is treated as unsafe
                stop_worker("cannot tell where %s resumes (%s: %s); stopping the worker without committing", message.tp, type(exc).__name__, exc,
                            cause="continuity")
            log.info("%s: generation %s starts at offset %s (resumes at %s)", message.tp, message.generation_id, message.offset, resume_at)
        if skip := continuity.observe(message.tp, message.generation_id, message.offset, resume_at):
            stop_worker("%s; stopping the worker without committing, so that its successor resumes from the last commit", skip,
                        cause="continuity")

    stall_watch = StallWatch()

    @app.timer(interval=settings.processor_stall_seconds / 2)
    async def watch_for_stalls() -> None:
        """Restart a worker that owns waiting records and handles none of them (continuity.StallWatch)."""
        owned = [tp for tp in app.assignor.assigned_actives() if tp.topic in guarded_topics]
        if app.rebalancing or not owned:
            return
        generation = app.consumer_generation_id
        try:
            committed, ends = await asyncio.wait_for(
                asyncio.gather(offsets.committed(owned), offsets.ends(owned)), OFFSET_LOOKUP_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a broker away is not a stall; the next check tries again
            log.warning("stall check skipped: %s", type(exc).__name__)
            return
        if app.rebalancing or generation != app.consumer_generation_id:
            return
        positions = {tp: continuity.position(tp, generation) or committed.get(tp, 0) for tp in owned}
        metrics.set_consumer_lag(positions, ends)
        if stalled := stall_watch.check(generation, positions, ends):
            stop_worker("records wait in %s but this worker has handled none of them for %.0f s; stopping it so that "
                        "it rejoins", ", ".join(f"{tp.topic}[{tp.partition}]@{positions[tp]}" for tp in stalled),
                        settings.processor_stall_seconds / 2, cause="stall")

    async def emit(topic, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Hand a record straight to faust's producer, whose flush before every commit covers it. faust's
        Topic.send adds per-record bookkeeping that cost more than the record's own work."""
        delivery = await app.producer.send(topic.get_topic_name(), key, value, partition, None, None)
        delivery.add_done_callback(stop_on_failed_delivery)

    async def hand_over_changelog() -> None:
        """Wait until every table write so far has reached the Kafka producer.

        faust queues changelog records in a buffer, and its flush before an offset commit gives up after
        0.1 s without progress, so a commit could overtake the state it depends on. Agents call this
        before a message is acknowledged; the commit's producer flush then covers the changelog too."""
        buffer = app.producer.buffer
        while buffer.size:
            await buffer.flush_atmost(buffer.size)

    async def decode_or_dead_letter(model, key: bytes | None, value: bytes | None):
        """The message as `model`, or None after it went to the dead-letter topic with its reason (a poison
        message is recorded and skipped, never retried forever)."""
        try:
            return model.model_validate_json(value or b"")
        except ValidationError as exc:
            await emit(dead_letter, key, poison_message("processor", value, model.__name__, f"not a {model.__name__}: {exc.errors()[0]['msg']}"))
            metrics.POISON_MESSAGES.labels(schema=model.__name__).inc()
            return None

    async def events_of(handed: faust.types.EventT, model, key_of, partitions: int) -> list[Keyed]:
        """The events of a record (an envelope or a single event) that this partition may handle; the rest go
        to the dead-letter topic, each alone with its reason (records.read_record)."""
        message = handed.message
        read = read_record(handed.key, handed.value, message.headers, message.partition, partitions,
                           model.model_validate_json, key_of, model.__name__)
        for refusal in read.refusals:
            bad_row = partition_mismatch if refusal.field == "envelope_partition" else poison_message
            origin = f"{message.topic}[{message.partition}]@{message.offset}"
            await emit(dead_letter, refusal.key, bad_row("processor", refusal.payload, refusal.field, refusal.reason, origin))
            metrics.POISON_MESSAGES.labels(schema=model.__name__).inc()
        return read.events

    @app.agent(raw)
    @stop_worker_on_failure
    async def sessionize(stream):
        """Raw events → sessions, per device, in event time; identity facts go to the sequencer.

        Events come in batches: each device's state is read and written once per batch (one changelog
        record, not one per event) and only a session's latest update leaves, as it carries the whole
        session. The batch is acknowledged after its sends, so a crash replays it (duplicates collapse)."""
        async for batch in stream.take_events(settings.processor_batch_max, within=settings.processor_batch_seconds):
            for event_message in batch:
                await verify_contiguous(event_message)
            states: dict[bytes, DeviceState | None] = {}
            last_event_of: dict[bytes, faust.types.EventT] = {}  # the table writes as (in the partition of) this event
            session_changes: dict[bytes, dict[str, bytes]] = {}  # key → session id (or merge) → latest message
            for event_message in batch:
                partition = event_message.message.partition
                for keyed in await events_of(event_message, RawEvent, device_key_of, topics.raw.partitions):
                    key, event = keyed.key, keyed.event
                    watermark = watermarks.observe(partition, event.timestamp)
                    if key not in states:
                        stored = device_sessions.get(key)
                        states[key] = DeviceState.from_json(stored) if stored else None
                    state = states[key]
                    result = assign(state, event, watermark, sessionizer)
                    states[key], last_event_of[key] = result.state, event_message

                    if result.duplicate:
                        # Counted once already. Re-sent downstream as the first copy was (its event time, its session's
                        # update): after a crash the state may hold an event whose outputs never left.
                        metrics.DUPLICATES.inc()
                    elif result.late:
                        metrics.LATE_EVENTS.inc()
                    out = EnrichedEvent.model_construct(**{**event.__dict__, "timestamp": result.event_time},
                                                   session_id=result.session_id, session_seq=result.session_seq)
                    distinct_key = event.distinct_id.encode()
                    if distinct_key == key:
                        # Same key, same partition: the person-of table is right here, no re-keying hop needed.
                        await emit(enriched, key, stamped_json(out, person_of.get(key)))
                    else:
                        await emit(sessioned, distinct_key, out.model_dump_json().encode())
                    changes = session_changes.setdefault(key, {})
                    for merge in result.merges:
                        changes[f"merge:{merge.absorbed_session_id}"] = merge.model_dump_json().encode()
                    for update in result.updates:
                        changes[update.session_id] = update.model_dump_json().encode()
                    # "seen" at every session start (not only a device's first): cheap, and it survives a lost send.
                    for command in commands_for(event, first_sighting=state is None or result.session_seq == 1 or result.duplicate):
                        await emit(identity_commands, command_key_of(command), command.model_dump_json().encode())
            for key, state in states.items():
                if state is not None:
                    with handling(last_event_of[key]):
                        device_sessions[key] = state.to_json()
            for key, changes in session_changes.items():
                for message in changes.values():
                    await emit(sessions, key, message)
            await hand_over_changelog()

    @app.timer(interval=settings.session_tick_seconds)
    async def tick() -> None:
        """Wake every partition this worker owns, so idle sessions close without new events."""
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.raw.name:
                await emit(ticks, None, b"tick", partition=tp.partition)

    @app.agent(ticks)
    @stop_worker_on_failure
    async def close_idle_sessions(stream):
        async for tick_event in stream.events():
            partition = tick_event.message.partition
            watermark = watermarks.current(partition)
            for key in [k for k in list(device_sessions.keys()) if partition_of(k, topics.raw.partitions) == partition]:
                remaining, updates = close_expired(DeviceState.from_json(device_sessions[key]), watermark, sessionizer)
                if not updates:
                    continue
                if remaining is None:
                    del device_sessions[key]  # bounded memory: idle devices leave the table
                else:
                    device_sessions[key] = remaining.to_json()
                metrics.SESSIONS_ENDED.inc(len(updates))
                for update in updates:
                    await emit(sessions, key, update.model_dump_json().encode())
            await hand_over_changelog()

    @app.agent(identity_commands)
    @stop_worker_on_failure
    async def resolve_identities(stream):
        """The identity sequencer: one partition, one order for every merge decision."""
        resolver = IdentityResolver(identity_state)
        async for handed in stream.events():
            await verify_contiguous(handed)
            for keyed in await events_of(handed, IdentityCommand, command_key_of, topics.identity_commands.partitions):
                resolution = resolver.apply(keyed.event)
                for mapping in resolution.mappings:
                    await emit(identities, mapping.distinct_id.encode(), mapping.model_dump_json().encode())
                for message in (*resolution.merges, *resolution.persons):
                    person = getattr(message, "into_person", None) or message.person_id
                    await emit(persons, person.encode(), message.model_dump_json().encode())
                for warning in resolution.warnings:
                    metrics.IDENTITY_WARNINGS.labels(field=warning.field).inc()
                    await emit(dead_letter, keyed.key, identity_warning("processor", keyed.payload, warning))
            await hand_over_changelog()

    @app.agent(identities)
    @stop_worker_on_failure
    async def learn_persons(stream):
        """Keep distinct id → person id where the events of that distinct id are stamped."""
        async for key, value in stream.items():
            mapping = await decode_or_dead_letter(DistinctIdMapping, key, value)
            if mapping is None:
                continue
            known = person_of.get(key)
            if mapping.is_deleted and known is not None and known["version"] < mapping.version:
                del person_of[key]  # a deleted person's id: later events get a stand-in until the id's fresh mapping
                await hand_over_changelog()
            elif not mapping.is_deleted and (known is None or known["version"] < mapping.version):
                person_of[key] = {"person_id": mapping.person_id, "version": mapping.version}
                await hand_over_changelog()

    @app.agent(sessioned)
    @stop_worker_on_failure
    async def stamp_person(stream):
        """Attach the person known now; queries resolve later merges through the mapping tables."""
        async for handed in stream.events():
            await verify_contiguous(handed)
            for keyed in await events_of(handed, EnrichedEvent, distinct_key_of, topics.sessioned.partitions):
                await emit(enriched, keyed.key, stamped_json(keyed.event, person_of.get(keyed.key)))

    return app
