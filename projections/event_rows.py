"""Enriched events → columns of the `events` table. Pure: no I/O."""

from __future__ import annotations

import orjson

from schemas.events import EnrichedEvent

EVENT_COLUMNS: list[tuple[str, str]] = [
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
]


def event_row(event: EnrichedEvent, partition: int, offset: int) -> list:
    return [
        event.message_id,
        event.timestamp,
        event.received_at,
        event.type,
        event.event or "",
        event.distinct_id,
        event.anonymous_id or "",
        event.user_id or "",
        event.person_id or "",
        event.session_id or "",
        orjson.dumps(event.properties).decode(),
        orjson.dumps(event.traits).decode(),
        orjson.dumps(event.context).decode(),
        event.source_id,
        event.ip or "",
        event.user_agent or "",
        event.flags,
        partition,
        offset,
    ]
