-- Lifecycle stages and static lists (issue 17). A person's stage and current lists on its row; existing rows read
-- '' and [] until their person's next update rewrites them.
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS stage LowCardinality(String) AFTER status;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS lists Array(String) AFTER stage;

-- Every stage write of a person (schemas/stages.py): the ones that took effect are its stage history; a rule
-- write whose compare-and-set failed is kept with effective = 0. Rewritten whole (a newer version) whenever the
-- person's row is; is_deleted hides the rows of a person merged away.
CREATE TABLE IF NOT EXISTS {db}.stage_history
(
    person_id   String,
    command_id  String,
    stage       LowCardinality(String),
    from_stage  LowCardinality(String),
    entered_at  DateTime64(3, 'UTC'),
    by          LowCardinality(String),
    reason      String,
    effective   Bool,
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (person_id, command_id);

-- Static list definitions, from the compacted lists topic.
CREATE TABLE IF NOT EXISTS {db}.lists
(
    list_id     String,
    name        String,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC'),
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY list_id;

-- One row per membership period of a person in a list: opened by an add, closed by a remove (removed_at NULL:
-- still a member), so membership at any past time can be queried.
CREATE TABLE IF NOT EXISTS {db}.list_members
(
    list_id     String,
    person_id   String,
    added_command_id String,
    added_at    DateTime64(3, 'UTC'),
    added_by    String,
    removed_at  Nullable(DateTime64(3, 'UTC')),
    removed_by  String,
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (list_id, person_id, added_command_id);

-- Lifecycle stage definitions in force and deleted (from the compacted lifecycle-stages topic).
CREATE TABLE IF NOT EXISTS {db}.lifecycle_stages
(
    stage_id    String,
    name        String,
    position    Int32,
    rule        String,
    moved_to    String,
    updated_at  DateTime64(3, 'UTC'),
    version     UInt64,
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY stage_id
