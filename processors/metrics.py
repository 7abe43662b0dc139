"""Prometheus metrics of the stream processors (served on FOOTFALL_PROCESSOR_METRICS_PORT)."""

from prometheus_client import Counter

DUPLICATES = Counter("footfall_processor_duplicate_events_total", "Events whose messageId a device had already sent")
LATE_EVENTS = Counter("footfall_processor_late_events_total", "Events older than the watermark minus the allowed lateness")
SESSIONS_ENDED = Counter("footfall_processor_sessions_ended_total", "Sessions closed by the watermark")
IDENTITY_WARNINGS = Counter("footfall_processor_identity_warnings_total", "Identity commands refused in part", ["field"])
POISON_MESSAGES = Counter("footfall_processor_poison_messages_total", "Unreadable messages sent to the dead-letter topic", ["schema"])
