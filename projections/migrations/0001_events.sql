-- One row per accepted event. ReplacingMergeTree on (distinct_id, timestamp, message_id): a redelivered
-- event has the same key and collapses into one row (query with FINAL for exact counts before merges).
CREATE TABLE IF NOT EXISTS {db}.events
(
    message_id   String,
    timestamp    DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    type         LowCardinality(String),
    event        String,
    distinct_id  String,
    anonymous_id String,
    user_id      String,
    person_id    String,
    session_id   String,
    properties   String,
    traits       String,
    context      String,
    source_id    LowCardinality(String),
    ip           String,
    user_agent   String,
    flags        Array(LowCardinality(String)),
    _partition   UInt16,
    _offset      UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (distinct_id, timestamp, message_id)
SETTINGS non_replicated_deduplication_window = 1000
