-- Real-time segments (issue 17): one row per period of a person in a segment, from the segment_entered and
-- segment_exited changes on profile-changes (the evaluator publishes them; the projector writes them here).
-- `entry` numbers a person's entries into one segment (1, 2, ...); the exit of an entry is a newer version of
-- its row (version 2), so a replay in any order keeps the closed period. exited_at NULL: still a member.
-- Members at a past time T: entered_at <= T AND (exited_at IS NULL OR exited_at > T).
CREATE TABLE IF NOT EXISTS {db}.segment_members
(
    segment_id          String,
    person_id           String,
    entry               UInt32,
    entered_at          DateTime64(3, 'UTC'),
    exited_at           Nullable(DateTime64(3, 'UTC')),
    entered_change_id   String,
    exited_change_id    String,
    version             UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (segment_id, person_id, entry);
