"""The cluster schema (FOOTFALL_CLICKHOUSE_CLUSTER) without a cluster: chdb parses every cluster statement
(formatQuery), and the same DDL rewritten back to single-node engines runs and behaves like the single-node
schema. The statements come from the migration files themselves, so a new migration is covered as it lands."""

from __future__ import annotations

import re
import uuid
from importlib import resources

import pytest

from projections import cluster
from projections.clickhouse import migrate, migrations, statements
from projections.cluster import SHARDED, cluster_statements

pytestmark = pytest.mark.integration
CLUSTER = "footfall"


def single_node_ddl(database: str) -> list[str]:
    """Every migration and view statement as it runs on one node, in order."""
    sql = [text for _, _, text in migrations()] + [resources.files("projections").joinpath("views.sql").read_text()]
    return [statement.replace("{db}", database) for text in sql for statement in statements(text)]


def cluster_ddl(database: str) -> list[str]:
    return [each for statement in single_node_ddl(database) for each in cluster_statements(statement, CLUSTER)]


def back_to_single_node(statement: str) -> str:
    """The cluster DDL with one node's engines: no ON CLUSTER, MergeTree for Replicated*MergeTree (the Keeper
    path and replica dropped), and a Merge table over the local table where the cluster has a Distributed one."""
    statement = statement.replace(f" ON CLUSTER '{CLUSTER}'", "")
    statement = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"\1(", statement)
    statement = re.sub(r"Distributed\('[^']*', '([^']*)', '([^']*)', [^)]*\)\)?", r"Merge('\1', '^\2$')", statement)
    return statement.replace("replicated_deduplication_window", "non_replicated_deduplication_window")


def format_query(client, statement: str) -> str:
    return client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]


def test_chdb_parses_every_cluster_statement(clickhouse_client):
    formatted = [format_query(clickhouse_client, statement) for statement in cluster_ddl("footfall")]
    ddl = [
        f
        for f in formatted
        if f.startswith(("CREATE TABLE", "CREATE MATERIALIZED VIEW", "CREATE VIEW", "DROP", "CREATE DATABASE", "ALTER TABLE"))
    ]
    assert ddl == formatted
    assert all(f" ON CLUSTER {CLUSTER}" in f for f in formatted)
    engines = [m for f in formatted if (m := re.search(r"ENGINE = (\w+)", f))]
    assert {m[1] for m in engines} <= {
        "ReplicatedReplacingMergeTree",
        "ReplicatedAggregatingMergeTree",
        "ReplicatedMergeTree",
        "Distributed",
    }


def test_events_and_sessions_are_sharded_and_the_rest_replicated_everywhere():
    by_table = {}
    for statement in cluster_ddl("footfall"):
        if match := re.match(r"CREATE TABLE IF NOT EXISTS footfall\.(\w+)", statement):
            by_table[match[1]] = statement
    assert "Distributed('footfall', 'footfall', 'events_local', sipHash64(distinct_id))" in by_table["events"]
    assert "Distributed('footfall', 'footfall', 'sessions_local', sipHash64(session_id))" in by_table["sessions"]
    assert "'/clickhouse/tables/{uuid}/{shard}', '{replica}'" in by_table["events_local"]
    for table in ("persons", "person_distinct_ids", "person_overrides", "session_overrides"):
        assert f"{table}_local" not in by_table
        assert f"ReplicatedReplacingMergeTree('{cluster.EVERY_NODE_PATH}', '{cluster.EVERY_NODE_REPLICA}'" in by_table[table]
    materialized = next(s for s in cluster_ddl("footfall") if s.startswith("CREATE MATERIALIZED VIEW"))
    assert "TO footfall.event_counts_daily_by_distinct_id_local" in materialized and "FROM footfall.events_local" in materialized


def test_alter_of_a_sharded_table_changes_the_shards_and_the_distributed_table():
    assert cluster_statements("ALTER TABLE footfall.events ADD COLUMN IF NOT EXISTS x String", CLUSTER) == [
        "ALTER TABLE footfall.events_local ON CLUSTER 'footfall' ADD COLUMN IF NOT EXISTS x String",
        "ALTER TABLE footfall.events ON CLUSTER 'footfall' ADD COLUMN IF NOT EXISTS x String",
    ]
    assert cluster_statements("ALTER TABLE footfall.persons DROP COLUMN x", CLUSTER) == [
        "ALTER TABLE footfall.persons ON CLUSTER 'footfall' DROP COLUMN x"
    ]


def test_the_cluster_ddl_on_single_node_engines_runs_like_the_single_node_schema(clickhouse_client):
    client = clickhouse_client
    single, clustered = f"single_{uuid.uuid4().hex[:8]}", f"cluster_{uuid.uuid4().hex[:8]}"
    migrate(client, single)
    client.command(f"CREATE DATABASE {clustered}")
    try:
        for statement in cluster_ddl(clustered):
            client.command(back_to_single_node(statement))

        def tables(database):
            return {
                row[0]: row[1]
                for row in client.query(
                    "SELECT name, engine FROM system.tables WHERE database = {d:String}", parameters={"d": database}
                ).result_rows
            }

        def columns(database, table):
            return client.query(
                "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
                parameters={"d": database, "t": table},
            ).result_rows

        # the same names as one node (plus a local table under each sharded one), with the same columns
        assert set(tables(clustered)) == set(tables(single)) - {"schema_migrations"} | {f"{t}_local" for t in SHARDED}
        for table in tables(single):
            if table != "schema_migrations":
                assert columns(clustered, table) == columns(single, table), table

        # an event written to a shard's table shows through the table queries use and through the daily counts
        for database, events in ((single, "events"), (clustered, "events_local")):
            client.command(
                f"INSERT INTO {database}.{events} (message_id, timestamp, received_at, type, event, distinct_id, person_id) "
                "VALUES ('m1', '2025-01-01 10:00:00', '2025-01-01 10:00:01', 'track', 'Signed Up', 'd1', 'p1'), "
                "('m1', '2025-01-01 10:00:00', '2025-01-01 10:00:01', 'track', 'Signed Up', 'd1', 'p1')"
            )
            client.command(
                f"INSERT INTO {database}.person_distinct_ids (distinct_id, person_id, version, is_deleted) VALUES ('d1', 'p1', 1, 0)"
            )

        def answers(database):
            return (
                client.query(f"SELECT count() FROM {database}.events FINAL").result_rows,
                client.query(f"SELECT person_id, event, count FROM {database}.event_counts_daily").result_rows,
                client.query(f"SELECT message_id, live_person_id FROM {database}.events_resolved").result_rows,
            )

        assert answers(clustered) == answers(single) == ([(1,)], [("p1", "Signed Up", 1)], [("m1", "p1")])
    finally:
        client.command(f"DROP DATABASE IF EXISTS {single}")
        client.command(f"DROP DATABASE IF EXISTS {clustered}")
