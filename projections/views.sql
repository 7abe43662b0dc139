-- Views and the materialized view over the tables: no data of their own, so they are dropped and created
-- again by every `migrate` (after the versioned table migrations). ClickHouse stores them with their
-- database's name inside, so a replay that renames databases re-creates them too.
DROP VIEW IF EXISTS {db}.event_counts_daily_mv;
CREATE MATERIALIZED VIEW {db}.event_counts_daily_mv TO {db}.event_counts_daily_by_distinct_id AS
SELECT toDate(timestamp) AS day, distinct_id, event, type, uniqExactState(message_id) AS events
FROM {db}.events
GROUP BY day, distinct_id, event, type;

-- Daily counts per live person, event name and type (merged identities included).
DROP VIEW IF EXISTS {db}.event_counts_daily;
CREATE VIEW {db}.event_counts_daily AS
SELECT c.day AS day, m.person_id AS person_id, c.event AS event, c.type AS type, uniqExactMerge(c.events) AS count
FROM {db}.event_counts_daily_by_distinct_id AS c
INNER JOIN (SELECT distinct_id, argMax(person_id, version) AS person_id FROM {db}.person_distinct_ids GROUP BY distinct_id HAVING argMax(is_deleted, version) = 0) AS m
    ON c.distinct_id = m.distinct_id
GROUP BY day, person_id, event, type;

-- Events with the live person and session resolved (merges applied): what analysts query by person.
DROP VIEW IF EXISTS {db}.events_resolved;
CREATE VIEW {db}.events_resolved AS
SELECT e.*,
       multiIf(m.mapped_person_id != '', m.mapped_person_id, po.into_person != '', po.into_person, e.person_id) AS live_person_id,
       if(so.survivor_session_id != '', so.survivor_session_id, e.session_id) AS live_session_id
FROM {db}.events AS e FINAL
LEFT JOIN (SELECT distinct_id AS mapped_id, argMax(person_id, version) AS mapped_person_id FROM {db}.person_distinct_ids GROUP BY distinct_id) AS m
    ON e.distinct_id = m.mapped_id
-- Rows keyed by a person, not a distinct id (the `$` rows of profile changes): the person it was merged into.
LEFT JOIN (SELECT from_person, argMax(into_person, version) AS into_person FROM {db}.person_overrides GROUP BY from_person) AS po
    ON e.person_id = po.from_person
LEFT JOIN (SELECT absorbed_session_id, argMax(survivor_session_id, version) AS survivor_session_id FROM {db}.session_overrides GROUP BY absorbed_session_id) AS so
    ON e.session_id = so.absorbed_session_id
