-- Deals, tickets, activities and other objects (issue 18): one row per (type, id) after FINAL, rewritten whole
-- with a growing version; _state is the fold's state (schemas/objects.py). closed_at is when the object entered
-- one of its type's closed stages (NULL while open).
CREATE TABLE IF NOT EXISTS {db}.objects
(
    object_type  LowCardinality(String),
    object_id    String,
    stage        LowCardinality(String),
    owner        String,
    properties   String,
    due_at       Nullable(DateTime64(3, 'UTC')),
    closed_at    Nullable(DateTime64(3, 'UTC')),
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC'),
    _state       String,
    version      UInt64,
    is_deleted   UInt8,
    INDEX owner_bloom owner TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (object_type, object_id);

-- An object's links to users (link_kind 'user', link_id a person id) and companies ('company', a company id):
-- one row per link after FINAL; an unlink or the object's delete deletes it. The bloom filter serves
-- "a user's objects".
CREATE TABLE IF NOT EXISTS {db}.object_links
(
    object_type  LowCardinality(String),
    object_id    String,
    link_kind    LowCardinality(String),
    link_id      String,
    linked_at    DateTime64(3, 'UTC'),
    version      UInt64,
    is_deleted   UInt8,
    INDEX link_bloom link_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (object_type, object_id, link_kind, link_id);

-- Every object command the projector applied: what ?wait=true looks for (a redelivery collapses).
CREATE TABLE IF NOT EXISTS {db}.object_commands
(
    command_id   String,
    kind         LowCardinality(String),
    object_type  LowCardinality(String),
    object_id    String,
    at           DateTime64(3, 'UTC'),
    applied_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY command_id
