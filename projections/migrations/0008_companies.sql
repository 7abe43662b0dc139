-- Companies (issue 18): one row per company id after FINAL, rewritten whole with a growing version, as persons
-- are; _state is the fold's state (projections/companies.py). member_count and last_seen are derived: the
-- active members, and the latest last_seen among them.
CREATE TABLE IF NOT EXISTS {db}.companies
(
    company_id    String,
    name          String,
    domain        String,
    properties    String,
    member_count  UInt32,
    last_seen     DateTime64(3, 'UTC'),
    created_at    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC'),
    _state        String,
    version       UInt64,
    is_deleted    UInt8,
    INDEX domain_bloom domain TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY company_id;

-- Memberships: one row per (company, person) after FINAL. An ended membership stays (ended_at set,
-- is_active false); derived ones (by email domain) are flagged. The bloom filter serves "a user's companies".
CREATE TABLE IF NOT EXISTS {db}.company_members
(
    company_id  String,
    person_id   String,
    role        String,
    is_primary  Bool,
    started_at  DateTime64(3, 'UTC'),
    ended_at    Nullable(DateTime64(3, 'UTC')),
    is_active   Bool,
    derived     Bool,
    source      LowCardinality(String),
    _state      String,
    version     UInt64,
    is_deleted  UInt8,
    INDEX person_bloom person_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (company_id, person_id);

-- Every company command the projector applied: what ?wait=true looks for (a redelivery collapses).
CREATE TABLE IF NOT EXISTS {db}.company_commands
(
    command_id  String,
    kind        LowCardinality(String),
    company_id  String,
    person_id   String,
    at          DateTime64(3, 'UTC'),
    applied_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY command_id
