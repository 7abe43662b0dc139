"""The faust app and its topology, readable in one place (in the manner of a Kafka Streams topology).

    raw ──► enrich ──► enriched
       └──► (bad rows) ──► dead-letter
"""

from __future__ import annotations

import logging

import faust
from pydantic import ValidationError

from schemas.bad_rows import BadRow, Problem
from schemas.config import FootfallSettings
from schemas.events import EnrichedEvent, RawEvent

log = logging.getLogger(__name__)


def bad_row(payload: bytes, reason: str) -> bytes:
    from datetime import UTC, datetime

    return BadRow(
        stage="processor",
        problems=[Problem(field="message", reason=reason)],
        source_id=None,
        received_at=datetime.now(UTC),
        payload=payload.decode("utf-8", "backslashreplace"),
    ).model_dump_json().encode()


def create_app(settings: FootfallSettings) -> faust.App:
    topics = settings.topics
    app = faust.App(
        f"{settings.topic_prefix}-processor",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        web_port=settings.processor_web_port,
        datadir=str(settings.data_dir / "processor"),
    )
    raw = app.topic(topics.raw.name, key_serializer="raw", value_serializer="raw", partitions=topics.raw.partitions)
    enriched = app.topic(
        topics.enriched.name, key_serializer="raw", value_serializer="raw", partitions=topics.enriched.partitions
    )
    dead_letter = app.topic(topics.dead_letter.name, key_serializer="raw", value_serializer="raw")

    @app.agent(raw)
    async def enrich(stream):
        async for key, value in stream.items():
            try:
                event = RawEvent.model_validate_json(value)
            except ValidationError as exc:
                await dead_letter.send(key=key, value=bad_row(value, f"not a raw event: {exc.error_count()} errors"))
                continue
            enriched_event = EnrichedEvent(**event.model_dump())
            await enriched.send(key=key, value=enriched_event.model_dump_json().encode())

    return app
