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

Records on raw, sessioned, enriched, sessions and identity-commands are envelopes: many events of one partition
(schemas/envelope.py); single-event records still read. Each table is co-partitioned with the topic that writes
it, so a key's state lives where its events arrive. The identity sequencer runs on one partition: every merge is
decided in one order, wherever the merged ids' events live (ARCHITECTURE.md, "identity"). Each agent's work is
a pure step (steps.py); what works around faust is in runtime.py.
"""

from __future__ import annotations

from datetime import timedelta

import faust

from processors import metrics, steps
from processors.events import read_event
from processors.identity import IdentityResolver
from processors.runtime import EXIT_AGENT_FAILED, Runtime, SeekingUncommittedToStart, Watermarks, handling, stop_worker_on_failure
from processors.sessionizer import SessionizerConfig, closing_horizon, earliest_end
from schemas.bad_rows import identity_warning
from schemas.config import FootfallSettings
from schemas.envelope import partition_for
from schemas.identity import DistinctIdMapping, IdentityCommand

__all__ = ["EXIT_AGENT_FAILED", "create_app"]


def create_app(settings: FootfallSettings, sessionizer: SessionizerConfig | None = None) -> faust.App:
    sessionizer = sessionizer or SessionizerConfig(
        gap=timedelta(seconds=settings.session_gap_seconds),
        allowed_lateness=timedelta(seconds=settings.allowed_lateness_seconds),
    )
    t = settings.topics
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
        TableManager=SeekingUncommittedToStart,
        datadir=str(settings.data_dir / "processor"),
        # A worker that dies is noticed within seconds, so its partitions move on quickly.
        broker_session_timeout=settings.consumer_session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout_seconds / 4),
        consumer_group_instance_id=settings.processor_instance_id,
        consumer_metadata_max_age_ms=int(settings.processor_metadata_refresh_seconds * 1000),
    )

    def topic(spec):
        return app.topic(spec.name, key_serializer="raw", value_serializer="raw", partitions=spec.partitions)

    raw, sessioned, identity_commands, identities = topic(t.raw), topic(t.sessioned), topic(t.identity_commands), topic(t.identities)
    # Internal: faust declares it (co-partitioned with raw, so a tick lands where that partition's sessions live).
    ticks = app.topic(
        f"{settings.topic_prefix}.session-ticks",
        key_serializer="raw",
        value_serializer="raw",
        partitions=t.raw.partitions,
        internal=True,
        retention=timedelta(hours=1),
    )
    # faust picks each changelog's serializers from key_type/value_type: bytes → raw, anything else → JSON.
    # Keys stay bytes where they are Kafka keys; the resolver's own keys are strings (JSON round-trips them).
    device_sessions = app.Table("device-sessions", partitions=t.raw.partitions, key_type=bytes, value_type=bytes)
    person_of = app.Table("person-of", partitions=t.identities.partitions, key_type=bytes)
    identity_state = app.Table("identity-state", partitions=1)
    run = Runtime(
        app, settings, guarded_topics={t.raw.name, t.sessioned.name, t.identity_commands.name}, watched_topics={t.identities.name}
    )
    # Tables are written through DirectWrites: the runtime sends their changelog records itself (runtime.py).
    states, persons_known, identity_store = (
        run.direct_writes(device_sessions),
        run.direct_writes(person_of),
        run.direct_writes(identity_state),
    )
    watermarks, decoded, ends = Watermarks(), steps.DecodedStates(device_sessions), steps.SessionEnds()
    pending = steps.PendingStates(decoded)

    async def write_states() -> None:
        """Each held device state into the table, its changelog record in the partition of its last record."""
        for key, (state, record) in pending.take().items():
            with handling(record):
                states[key] = stored = state.to_json()
            decoded.wrote(key, stored, state)
            ends.note(key, stored, earliest_end(state))
        await run.send_changelog(states)

    @app.agent(raw)
    @stop_worker_on_failure
    async def sessionize(stream):
        """Raw events → sessions; a batch is acknowledged after its sends and states, so a crash replays it."""
        async for batch in stream.take_events(settings.processor_batch_max, within=settings.processor_batch_seconds):
            async for handed in run.read_in_slices(batch, t.raw, read_event, steps.device_key, "RawEvent"):
                out = steps.sessionize(handed, pending.state_of, person_of.get, watermarks.observe, sessionizer)
                pending.hold(out.states)
                for spec, records in (
                    (t.enriched, out.enriched),
                    (t.sessioned, out.sessioned),
                    (t.sessions, out.sessions),
                    (t.identity_commands, out.identity_commands),
                ):
                    await run.send_enveloped(spec, records)
                metrics.DUPLICATES.inc(out.duplicates)
                metrics.LATE_EVENTS.inc(out.late)
                if pending.full:
                    await write_states()
            await write_states()

    @app.timer(interval=settings.session_tick_seconds)
    async def tick() -> None:
        """Wake every partition this worker owns, so idle sessions close without new events."""
        for tp in app.assignor.assigned_actives():
            if tp.topic == t.raw.name:
                await run.send(ticks.get_topic_name(), None, b"tick", partition=tp.partition)

    @app.agent(ticks)
    @stop_worker_on_failure
    async def close_idle_sessions(stream):
        async for tick_event in stream.events():
            partition = tick_event.message.partition
            watermark = watermarks.current(partition)
            horizon = closing_horizon(watermark, sessionizer)
            keys = [k for k in list(device_sessions.keys()) if partition_for(k, t.raw.partitions) == partition]
            for start in range(0, len(keys), settings.processor_slice_events):
                held = [  # a device with a state held by the batch in hand is not idle; the next tick sees it
                    (k, stored)
                    for k in keys[start : start + settings.processor_slice_events]
                    if k not in pending and (stored := device_sessions.get(k)) is not None and ends.may_end(k, stored, horizon)
                ]
                out = steps.end_idle_sessions(held, watermark, sessionizer)
                with handling(tick_event):
                    for key, state in out.states.items():
                        steps.apply_state(states, key, state)  # bounded memory: idle devices leave the table
                for key, (stored, end) in out.ends.items():
                    ends.note(key, stored, end)
                await run.send_changelog(states)
                metrics.SESSIONS_ENDED.inc(out.count)
                await run.send_enveloped(t.sessions, out.sessions)
                await run.let_others_run()

    @app.agent(identity_commands)
    @stop_worker_on_failure
    async def resolve_identities(stream):
        """The identity sequencer: one partition, one order for every merge decision."""
        resolver = IdentityResolver(identity_store)
        async for record in stream.events():
            async for handed in run.read_in_slices(
                [record], t.identity_commands, IdentityCommand.model_validate_json, steps.command_key, "IdentityCommand"
            ):
                with handling(record):
                    out = steps.resolve_identities(steps.events_in(handed), resolver)
                await run.send_changelog(identity_store)  # before the outputs: a command's state, then what it decided
                for key, value in out.identities:  # compacted: one record per distinct id
                    await run.send(t.identities.name, key, value)
                for key, value in out.persons:
                    await run.send(t.persons.name, key, value)
                for command, warning in out.warnings:
                    metrics.IDENTITY_WARNINGS.labels(field=warning.field).inc()
                    await run.send(t.dead_letter.name, command.key, identity_warning("processor", command.payload, warning))

    @app.agent(identities)
    @stop_worker_on_failure
    async def learn_persons(stream):
        """Keep distinct id → person id where the events of that distinct id are stamped."""
        async for record in stream.events():
            for mapping in await run.events_of(
                record, t.identities, DistinctIdMapping.model_validate_json, steps.mapping_key, "DistinctIdMapping"
            ):
                if (change := steps.learn_person(mapping.event, person_of.get(mapping.key))) is not None:
                    with handling(record):
                        steps.apply_state(persons_known, mapping.key, change.entry)  # None: a deleted person's id is forgotten
            await run.send_changelog(persons_known)

    @app.agent(sessioned)
    @stop_worker_on_failure
    async def stamp_person(stream):
        """Attach the person known now; queries resolve later merges through the mapping tables."""
        async for record in stream.events():
            async for handed in run.read_in_slices([record], t.sessioned, read_event, steps.distinct_key, "EnrichedEvent"):
                await run.send_enveloped(t.enriched, steps.stamp_persons(steps.events_in(handed), person_of.get))

    return app
