"""The persons projection against the real engine: an event stamped before its mapping existed."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.persons import PERSONS, PersonChanges, PersonsProjection
from projections.rows import EVENTS, PERSON_DISTINCT_IDS, event_row, mapping_row
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping, PersonIdentity, person_id_for


def insert(client, database, table, rows):
    client.insert(f"{database}.{table.name}", rows, column_names=table.column_names, column_type_names=table.column_types)


def test_a_stand_in_profile_folds_into_the_real_person_when_the_mapping_arrives(clickhouse_client, database):
    projection = PersonsProjection(clickhouse_client, database)
    real = person_id_for("device-1")
    early = EnrichedEvent(
        message_id="m1",
        type="identify",
        anonymous_id="device-1",
        user_id="user-1",
        traits={"plan": "pro"},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        source_id="web",
        person_id=person_id_for("user-1"),
    )
    insert(clickhouse_client, database, EVENTS, [event_row(early, 0, 0)])
    # batch 1: the event, before the resolver's mapping for "user-1" is known: a stand-in profile
    insert(clickhouse_client, database, PERSONS, projection.rows(PersonChanges(events=[early]), {}))
    stand_in = person_id_for("user-1")
    assert clickhouse_client.query(f"SELECT person_id FROM {database}.persons FINAL").result_rows == [(stand_in,)]

    # batch 2: the mapping (user-1 joined device-1's person) and that person's identity facts
    mappings = [
        DistinctIdMapping(distinct_id="device-1", person_id=real, version=1),
        DistinctIdMapping(distinct_id="user-1", person_id=real, version=2),
    ]
    insert(clickhouse_client, database, PERSON_DISTINCT_IDS, [mapping_row(m) for m in mappings])
    identity = PersonIdentity(person_id=real, visitor_number=7, identified=True, is_contact=True, version=3)
    changes = PersonChanges(identities=[identity], distinct_ids={"device-1", "user-1"})
    insert(clickhouse_client, database, PERSONS, projection.rows(changes, {}))

    profiles = clickhouse_client.query(
        f"SELECT person_id, visitor_alias, JSONExtractString(properties, 'plan'), event_count FROM {database}.persons FINAL"
    ).result_rows
    assert profiles == [(real, "Visitor 7", "pro", 1)]  # the stand-in is gone, its event counted once, in the real person


def test_ids_that_look_like_sql_are_only_ever_values(clickhouse_client, database):
    """Distinct ids are client-controlled; they reach ClickHouse as server-side parameters, never inside the SQL."""
    projection = PersonsProjection(clickhouse_client, database)
    hostile = "it's \\' OR 1=1) --"
    person = person_id_for("device-x")
    insert(
        clickhouse_client, database, PERSON_DISTINCT_IDS, [mapping_row(DistinctIdMapping(distinct_id=hostile, person_id=person, version=1))]
    )
    event = EnrichedEvent(
        message_id="m-x",
        type="track",
        event="E",
        user_id=hostile,
        anonymous_id="device-x",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        source_id="web",
        person_id=person,
    )
    insert(clickhouse_client, database, EVENTS, [event_row(event, 0, 0)])
    rows = projection.rows(PersonChanges(events=[event], distinct_ids={hostile}), {})
    assert [row[0] for row in rows] == [person]
    assert rows[0][PERSONS.column_names.index("event_count")] == 1
