"""`footfall recover`: fix refused calls and send them again, through the collector's own validation.

The bad rows come from the dead-letter topic (the source of truth; `bad_rows` in ClickHouse is its
projection), selected by kind, time and source. A fix is a Python file defining

    def fix(payload, row):  # payload: the refused input, parsed JSON when it parses, else its text
        ...                 # row: the schemas.bad_rows.BadRow
        return payload      # a call (dict), a list of calls, a batch ({"batch": [...]}), or None to skip it

Each fixed call is validated and normalised exactly as the collector does it (`ingest.normalize`), as
received by the row's source at the row's original time, and written to the raw topic with the collector's
writer. Idempotent: a call keeps its messageId (one it lacked is derived from the bad row's place in the
topic), and the same time gives the same event time, so running a recovery twice sends the same events,
which every stage already counts once (duplicates collapse by messageId, as an SDK's retries do).

Only collector rows hold calls; a row whose payload was cut, or whose source is unknown (a body refused
before its write key was read), is skipped. A call still refused is reported, not written anywhere.
"""

from __future__ import annotations

import asyncio
import runpy
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, TopicPartition
from pydantic import ValidationError

from ingest.kafka_writer import EnvelopeWindow, Event, KafkaWriter, Record
from ingest.normalize import NOTHING_INHERITED, Edge, normalize_all
from ingest.sources import SourceRegistry
from schemas.bad_rows import BadRow, Problem, read_bad_row
from schemas.compacted import end_offset
from schemas.config import FootfallSettings
from schemas.tracking import BatchEnvelope

# Fixed forever: the messageId given to a recovered call that had none derives from it.
RECOVERY_NAMESPACE = uuid.UUID("6f1f3c1e-2d0a-4c55-9a43-8f1e4a7d2b90")

Fix = Callable[[Any, BadRow], Any]


@dataclass
class StillBad:
    position: str  # where the bad row is on the dead-letter topic: "partition@offset"
    index: int  # which call of the fixed payload
    problems: list[Problem]


@dataclass
class RecoveryReport:
    fixed: int = 0  # calls accepted and written to the raw topic
    still_bad: list[StillBad] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # why, per bad row
    message_ids: list[str] = field(default_factory=list)  # of the calls written

    def as_json(self) -> dict[str, Any]:
        return {
            "fixed": self.fixed,
            "still_bad": len(self.still_bad),
            "skipped": sum(self.skipped.values()),
            "skipped_because": dict(self.skipped),
            "still_bad_rows": [
                {"position": s.position, "index": s.index, "problems": [p.model_dump() for p in s.problems]} for s in self.still_bad
            ],
        }


def load_fix(path: Path) -> Fix:
    """The `fix` function of a Python file."""
    found = runpy.run_path(str(path)).get("fix")
    if not callable(found):
        raise ValueError(f"{path} defines no function fix(payload, row)")
    return cast(Fix, found)  # runpy's namespace is untyped; callable() checked it


def read_dead_letters(settings: FootfallSettings, since: datetime | None, timeout_s: float = 60) -> Iterator[tuple[str, bytes]]:
    """(position, value) of every dead-letter record written since `since`, up to the end offsets taken now."""
    topic = settings.topics.dead_letter.name
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"recover-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {p: end_offset(consumer, TopicPartition(topic, p), timeout_s) for p in partitions}
        if since is None:
            starts = dict.fromkeys(partitions, 0)
        else:
            at = int(since.timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, p, at) for p in partitions], timeout=30)
            starts = {tp.partition: (tp.offset if tp.offset >= 0 else ends[tp.partition]) for tp in found}
        remaining = {p for p in partitions if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in remaining])
        idle = 0
        while remaining:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
                if idle > timeout_s:
                    raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
                continue
            if message.error():
                continue
            partition, offset = message.partition(), message.offset()
            if partition in remaining and offset < ends[partition]:
                yield f"{partition}@{offset}", message.value() or b""
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
    finally:
        consumer.close()


def calls_in(fixed: Any) -> tuple[list[Any], BatchEnvelope]:
    """The calls a fix returned, and what they inherit when it is a batch."""
    if isinstance(fixed, dict) and isinstance(fixed.get("batch"), list):
        return fixed["batch"], BatchEnvelope.model_validate(fixed)
    return (fixed if isinstance(fixed, list) else [fixed]), NOTHING_INHERITED


def payload_of(row: BadRow) -> Any:
    try:
        return orjson.loads(row.payload)
    except orjson.JSONDecodeError:
        return row.payload


def with_message_id(call: Any, position: str, index: int) -> Any:
    if isinstance(call, dict) and not call.get("messageId"):
        return {**call, "messageId": str(uuid.uuid5(RECOVERY_NAMESPACE, f"{position}:{index}"))}
    return call


def recover_rows(
    rows: Iterator[tuple[str, bytes]],
    fix: Fix,
    sources: SourceRegistry,
    raw_topic: str,
    *,
    kinds: set[str],
    since: datetime | None = None,
    source_id: str | None = None,
) -> tuple[RecoveryReport, list[Record]]:
    """Pure: the records to write and the report, for the dead-letter records given."""
    report, records = RecoveryReport(), []
    for position, value in rows:
        try:
            row = read_bad_row(value)
        except ValidationError:
            continue  # not a bad row at all: nothing to recover (the projector recorded it as poison)
        if row.kind not in kinds or (since and row.received_at < since) or (source_id and row.source_id != source_id):
            continue
        if reason := unrecoverable(row, sources):
            report.skipped[reason] += 1
            continue
        fixed = fix(payload_of(row), row)
        if fixed is None:
            report.skipped["the fix returned None"] += 1
            continue
        try:
            calls, inherited = calls_in(fixed)
        except ValidationError as exc:
            report.still_bad.append(
                StillBad(position, 0, [Problem(field="batch", reason=str(exc.errors()[0]["msg"]), rule=exc.errors()[0]["type"])])
            )
            continue
        source = sources.find_by_id(row.source_id or "")
        edge = Edge(
            source_id=row.source_id or "",
            received_at=row.received_at,
            ip=None,
            user_agent=None,
            hash_emails=bool(source and source.hash_emails),
        )
        calls = [with_message_id(call, position, index) for index, call in enumerate(calls)]
        outcome = normalize_all(calls, edge, inherited)
        report.still_bad += [StillBad(position, index, problems) for index, _call, problems in outcome.rejected]
        records += [Record(raw_topic, event.device_key, event.value) for event in outcome.accepted]
        report.fixed += len(outcome.accepted)
        report.message_ids += [orjson.loads(event.value)["message_id"] for event in outcome.accepted]
    return report, records


def unrecoverable(row: BadRow, sources: SourceRegistry) -> str | None:
    if row.stage != "collector":
        return "not a refused call (a stream stage's row)"
    if row.payload_truncated:
        return "payload cut to its bound"
    if not row.source_id or sources.find_by_id(row.source_id) is None:
        return "no known source"
    return None


def recover(
    settings: FootfallSettings,
    sources: SourceRegistry,
    fix: Fix,
    *,
    kinds: set[str],
    since: datetime | None = None,
    source_id: str | None = None,
    dry_run: bool = False,
) -> RecoveryReport:
    """Read, fix, validate and (unless `dry_run`) write: the report once Kafka acknowledged every record."""
    rows = read_dead_letters(settings, since)
    report, records = recover_rows(rows, fix, sources, settings.topics.raw.name, kinds=kinds, since=since, source_id=source_id)
    if records and not dry_run:
        asyncio.run(_write(settings, records))
    return report


async def _write(settings: FootfallSettings, records: list[Record], chunk: int = 1_000) -> None:
    """The raw records as the collector writes them: in envelopes, each on its device key's partition."""
    window = EnvelopeWindow(settings.topics.raw.name, settings.collector_flush_seconds, settings.envelope_limits)
    writer = KafkaWriter(settings.kafka_bootstrap_servers, window, ack_timeout_s=60)
    try:
        for start in range(0, len(records), chunk):
            await writer.write(events=[Event(record.key.encode(), record.value) for record in records[start : start + chunk]])
    finally:
        writer.close()
