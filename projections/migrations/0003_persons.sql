-- Person profiles: one row per person id after FINAL. Every update writes the whole profile with a growing
-- version, so ReplacingMergeTree(version, is_deleted) keeps the latest row (a replayed update collapses into
-- it) and a latest row with is_deleted = 1 drops the person. _state is the reducer's state
-- (projections/profiles.py) that the next update folds on. No PARTITION BY: replacing only happens within a
-- partition, and a profile has no time that stays put (first_seen can move back). The bloom filter lets a
-- lookup by email skip granules.
CREATE TABLE IF NOT EXISTS {db}.persons
(
    person_id                String,
    visitor_number           UInt64,
    visitor_alias            String,
    is_identified            Bool,
    is_contact               Bool,
    email                    String,
    name                     String,
    phone                    String,
    email_domain             String,
    is_free_email            Bool,
    company_domain           String,
    properties               String,
    first_seen               DateTime64(3, 'UTC'),
    last_seen                DateTime64(3, 'UTC'),
    initial_referrer         String,
    initial_referring_domain String,
    initial_utm_source       String,
    initial_utm_medium       String,
    initial_utm_campaign     String,
    initial_utm_term         String,
    initial_utm_content      String,
    last_browser             LowCardinality(String),
    last_os                  LowCardinality(String),
    last_device_type         LowCardinality(String),
    session_count            UInt32,
    event_count              UInt64,
    status                   LowCardinality(String),
    merged_into              String,
    _state                   String,
    version                  UInt64,
    is_deleted               UInt8,
    INDEX email_bloom email TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY person_id
