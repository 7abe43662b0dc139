"""Messages → rows of the ClickHouse tables, with each table's column types. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.bad_rows import BadRow
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping
from schemas.sessions import SessionUpdate
from schemas.user_commands import UserCommand


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [kind for _, kind in self.columns]


EVENTS = TableSpec(
    "events",
    (
        ("message_id", "String"),
        ("timestamp", "DateTime64(3, 'UTC')"),
        ("received_at", "DateTime64(3, 'UTC')"),
        ("type", "LowCardinality(String)"),
        ("event", "String"),
        ("distinct_id", "String"),
        ("anonymous_id", "String"),
        ("user_id", "String"),
        ("person_id", "String"),
        ("session_id", "String"),
        ("properties", "String"),
        ("traits", "String"),
        ("context", "String"),
        ("source_id", "LowCardinality(String)"),
        ("ip", "String"),
        ("user_agent", "String"),
        ("flags", "Array(LowCardinality(String))"),
        ("_partition", "UInt16"),
        ("_offset", "UInt64"),
    ),
)

SESSIONS = TableSpec(
    "sessions",
    (
        ("session_id", "String"),
        ("device_key", "String"),
        ("distinct_id", "String"),
        ("status", "LowCardinality(String)"),
        ("absorbed_into", "String"),
        ("start", "DateTime64(3, 'UTC')"),
        ("end", "DateTime64(3, 'UTC')"),
        ("duration_seconds", "Float64"),
        ("event_count", "UInt32"),
        ("pageview_count", "UInt32"),
        ("bounced", "Bool"),
        ("entry_url", "String"),
        ("exit_url", "String"),
        ("referrer", "String"),
        ("referring_domain", "String"),
        ("utm_source", "String"),
        ("utm_medium", "String"),
        ("utm_campaign", "String"),
        ("utm_term", "String"),
        ("utm_content", "String"),
        ("browser", "LowCardinality(String)"),
        ("os", "LowCardinality(String)"),
        ("device_type", "LowCardinality(String)"),
        ("late_event_count", "UInt32"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

SESSION_OVERRIDES = TableSpec(
    "session_overrides", (("absorbed_session_id", "String"), ("survivor_session_id", "String"), ("version", "UInt64"))
)
PERSON_DISTINCT_IDS = TableSpec(
    "person_distinct_ids",
    (("distinct_id", "String"), ("person_id", "String"), ("version", "UInt64"), ("is_deleted", "UInt8")),
)
PERSON_OVERRIDES = TableSpec(
    "person_overrides",
    (("from_person", "String"), ("into_person", "String"), ("merged_at", "DateTime64(3, 'UTC')"), ("version", "UInt64")),
)
BAD_ROWS = TableSpec(
    "bad_rows",
    (
        ("received_at", "DateTime64(3, 'UTC')"),
        ("kind", "LowCardinality(String)"),
        ("schema_version", "UInt8"),
        ("stage", "LowCardinality(String)"),
        ("source_id", "LowCardinality(String)"),
        ("message_id", "String"),
        ("field", "String"),
        ("rule", "LowCardinality(String)"),
        ("reason", "String"),
        ("problems", "String"),
        ("payload", "String"),
        ("payload_truncated", "Bool"),
        ("payload_chars", "UInt64"),
        ("batch_index", "Nullable(UInt32)"),
        ("origin", "String"),
        ("_partition", "UInt16"),
        ("_offset", "UInt64"),
    ),
)

# What the events table does not keep of an EnrichedEvent, and why; every other field is a column of EVENTS
# (tests/unit/test_tables.py holds the event, this list, EVENTS and the DDL to each other).
EVENT_FIELDS_NOT_STORED = {
    "previous_id": "alias calls only; the identity resolver turns them into person_overrides",
    "group_id": "group calls only; the company they name is projected into companies and company_members",
    "sent_at": "the client's send time; only used to correct timestamp",
    "original_timestamp": "the client's event time; timestamp is it corrected for the client's clock",
    "session_seq": "the event's position in its session; used by the processors only",
}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(at: datetime) -> int:
    """A DateTime64(3) value as clickhouse-connect writes it unconverted: its per-value datetime conversion
    took a third of a bulk insert's time. Naive datetimes are UTC."""
    return ((at if at.tzinfo else at.replace(tzinfo=UTC)) - EPOCH) // MILLISECOND


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def event_row(event: EnrichedEvent, partition: int, offset: int) -> list:
    return [
        event.message_id,
        epoch_ms(event.timestamp),
        epoch_ms(event.received_at),
        event.type,
        event.event or "",
        event.distinct_id,
        event.anonymous_id or "",
        event.user_id or "",
        event.person_id or "",
        event.session_id or "",
        _json(event.properties),
        _json(event.traits),
        _json(event.context),
        event.source_id,
        event.ip or "",
        event.user_agent or "",
        event.flags,
        partition,
        offset,
    ]


def session_row(update: SessionUpdate) -> list:
    return [
        update.session_id,
        update.device_key,
        update.distinct_id or "",
        update.status,
        update.absorbed_into or "",
        epoch_ms(update.start),
        epoch_ms(update.end),
        update.duration_seconds,
        update.event_count,
        update.pageview_count,
        update.bounced,
        update.entry_url or "",
        update.exit_url or "",
        update.referrer or "",
        update.referring_domain or "",
        update.utm_source or "",
        update.utm_medium or "",
        update.utm_campaign or "",
        update.utm_term or "",
        update.utm_content or "",
        update.browser or "",
        update.os or "",
        update.device_type or "",
        update.late_event_count,
        update.version,
        int(update.status == "absorbed"),
    ]


def bad_row_row(row: BadRow, partition: int, offset: int) -> list:
    return [
        epoch_ms(row.received_at),
        row.kind,
        row.schema_version,
        row.stage,
        row.source_id or "",
        row.message_id or "",
        row.field,
        row.rule,
        row.reason,
        _json([problem.model_dump() for problem in row.problems]),
        row.payload,
        row.payload_truncated,
        row.payload_chars,
        row.index,
        row.origin or "",
        partition,
        offset,
    ]


def session_override_row(absorbed: str, survivor: str, version: int) -> list:
    return [absorbed, survivor, version]


def person_override_row(absorbed: str, survivor: str, merged_at: datetime, version: int) -> list:
    return [absorbed, survivor, epoch_ms(merged_at), version]


def mapping_row(mapping: DistinctIdMapping) -> list:
    return [mapping.distinct_id, mapping.person_id, mapping.version, int(mapping.is_deleted)]


class Overrides:
    """absorbed → survivor, kept flat: when the survivor is absorbed in turn, everything that pointed at it
    moves on too, so one lookup (or one join) always finds the live id."""

    def __init__(self, known: dict[str, str] | None = None):
        self.live: dict[str, str] = dict(known or {})

    def merge(self, absorbed: str, survivor: str) -> list[tuple[str, str]]:
        """Record a merge; returns every (absorbed, live survivor) pair that changed."""
        survivor = self.live.get(survivor, survivor)
        if absorbed == survivor:
            return []
        changed = [(absorbed, survivor)]
        changed += [(old, survivor) for old, target in self.live.items() if target == absorbed]
        for old, target in changed:
            self.live[old] = target
        return changed


USER_COMMANDS = TableSpec(
    "user_commands",
    (
        ("command_id", "String"),
        ("kind", "LowCardinality(String)"),
        ("person_id", "String"),
        ("at", "DateTime64(3, 'UTC')"),
        ("job_id", "String"),
        ("applied_at", "DateTime64(3, 'UTC')"),
    ),
)

ERASURES = TableSpec(
    "erasures",
    (
        ("erasure_id", "String"),
        ("person_id", "String"),
        ("id_digests", "Array(String)"),
        ("erased_at", "DateTime64(3, 'UTC')"),
    ),
)


def user_command_row(command: UserCommand, applied_at_ms: int) -> list[Any]:
    """A management command as `user_commands` keeps it: what `?wait=true` looks for, and the audit of writes."""
    return [command.command_id, command.kind, command.person_id, epoch_ms(command.at), command.job_id or "", applied_at_ms]


def erasure_row(command: UserCommand) -> list[Any]:
    """An erasure's audit record: the person, when, and only the digests of the erased identifiers."""
    return [command.command_id, command.person_id, command.id_digests, epoch_ms(command.at)]
