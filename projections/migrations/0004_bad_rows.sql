-- Bad rows: every refusal on the dead-letter topic (schemas/bad_rows.py), one row per dead-letter message.
-- ReplacingMergeTree keyed by the message's place in the topic (_partition, _offset): a replayed batch
-- collapses. The first problem is in field / rule / reason; `problems` holds them all (JSON). The bloom
-- filter lets the rows of one messageId skip granules.
CREATE TABLE IF NOT EXISTS {db}.bad_rows
(
    received_at       DateTime64(3, 'UTC'),
    kind              LowCardinality(String),
    schema_version    UInt8,
    stage             LowCardinality(String),
    source_id         LowCardinality(String),
    message_id        String,
    field             String,
    rule              LowCardinality(String),
    reason            String,
    problems          String,
    payload           String,
    payload_truncated Bool,
    payload_chars     UInt64,
    batch_index       Nullable(UInt32),
    origin            String,
    _partition        UInt16,
    _offset           UInt64,
    INDEX message_id_bloom message_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_id, kind, received_at, _partition, _offset)
