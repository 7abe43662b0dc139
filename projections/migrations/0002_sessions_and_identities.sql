-- Sessions: one row per session id after FINAL. Updates carry the whole session and a growing version;
-- a session absorbed by a bridging event is written once more with is_deleted = 1, so FINAL drops it.
-- No PARTITION BY: a session's start can move backwards, and replacing only happens within a partition.
CREATE TABLE IF NOT EXISTS {db}.sessions
(
    session_id        String,
    device_key        String,
    distinct_id       String,
    status            LowCardinality(String),
    absorbed_into     String,
    start             DateTime64(3, 'UTC'),
    end               DateTime64(3, 'UTC'),
    duration_seconds  Float64,
    event_count       UInt32,
    pageview_count    UInt32,
    bounced           Bool,
    entry_url         String,
    exit_url          String,
    referrer          String,
    referring_domain  String,
    utm_source        String,
    utm_medium        String,
    utm_campaign      String,
    utm_term          String,
    utm_content       String,
    browser           LowCardinality(String),
    os                LowCardinality(String),
    device_type       LowCardinality(String),
    late_event_count  UInt32,
    version           UInt64,
    is_deleted        UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY session_id;

-- Which session an absorbed session id now belongs to (for events stamped before the merge).
CREATE TABLE IF NOT EXISTS {db}.session_overrides
(
    absorbed_session_id String,
    survivor_session_id String,
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY absorbed_session_id;

-- The live person of every distinct id (anonymousId or userId). Always complete: a merge re-points
-- every distinct id of the absorbed person with a higher version.
CREATE TABLE IF NOT EXISTS {db}.person_distinct_ids
(
    distinct_id String,
    person_id   String,
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY distinct_id;

-- Merged persons: events stamped with from_person belong to into_person (flattened: always the live one).
CREATE TABLE IF NOT EXISTS {db}.person_overrides
(
    from_person String,
    into_person String,
    merged_at   DateTime64(3, 'UTC'),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY from_person;

-- How many distinct events per day, distinct id and event name: uniqExact over message ids, so a
-- duplicate delivery can never count twice. Query through event_counts_daily_by_person.
CREATE TABLE IF NOT EXISTS {db}.event_counts_daily_by_distinct_id
(
    day         Date,
    distinct_id String,
    event       String,
    type        LowCardinality(String),
    events      AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (distinct_id, day, type, event);
