-- The management API's additions (issue 16): tags on profiles, the applied command log, the erasure audit.
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS tags Array(String) AFTER properties;

-- Every user command the projector applied: what ?wait=true and GET /api/v1/commands/{id} look for, and
-- how a bulk job counts its applied commands. A redelivered command collapses (same command_id).
CREATE TABLE IF NOT EXISTS {db}.user_commands
(
    command_id  String,
    kind        LowCardinality(String),
    person_id   String,
    at          DateTime64(3, 'UTC'),
    job_id      String,
    applied_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY command_id;

-- The erasure audit trail: which person id, when, and the SHA-256 digests of the erased identifiers.
CREATE TABLE IF NOT EXISTS {db}.erasures
(
    erasure_id  String,
    person_id   String,
    id_digests  Array(String),
    erased_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY erasure_id
