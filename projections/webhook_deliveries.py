"""The `webhook_deliveries` table: one row per delivery attempt the dispatcher recorded on webhook-deliveries. Pure."""

from __future__ import annotations

from projections.rows import TableSpec, epoch_ms
from schemas.webhooks import DeliveryAttempt

WEBHOOK_DELIVERIES = TableSpec(
    "webhook_deliveries",
    (
        ("webhook_id", "String"),
        ("change_id", "String"),
        ("attempt", "UInt16"),
        ("status", "LowCardinality(String)"),
        ("http_status", "UInt16"),
        ("error", "String"),
        ("duration_ms", "Float64"),
        ("at", "DateTime64(3, 'UTC')"),
        ("person_id", "String"),
        ("kind", "LowCardinality(String)"),
        ("url", "String"),
        ("change", "String"),
    ),
)


def delivery_row(attempt: DeliveryAttempt) -> list:
    change = attempt.change.model_dump_json() if attempt.change is not None else ""
    return [
        attempt.webhook_id,
        attempt.change_id,
        attempt.attempt,
        attempt.status,
        attempt.http_status,
        attempt.error,
        attempt.duration_ms,
        epoch_ms(attempt.at),
        attempt.person_id,
        attempt.kind,
        attempt.url,
        change,
    ]
