"""ClickHouse access: one way to connect (clickhouse-connect, chdb or server) and versioned migrations."""

from __future__ import annotations

import logging
import re
from importlib import resources

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from projections.cluster import INSERT_SETTINGS, cluster_statements

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def connect(dsn: str, database: str | None = None, cluster: str | None = None) -> Client:
    """A client for `chdb:///path` (embedded, in this process) or an http(s):// server URL. A server gets the
    query parameters in the request body, not the URL: a batch's id lists are far longer than a URL may be.
    With a `cluster`, inserts into Distributed tables return only once every shard has the rows
    (cluster.INSERT_SETTINGS)."""
    options = {} if dsn.startswith("chdb:") else {"form_encode_query_params": True}
    client = clickhouse_connect.get_client(dsn=dsn, settings=INSERT_SETTINGS if cluster else None, **options)
    if database:
        client.database = database
    return client


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in projections/migrations, in order."""
    found = []
    for entry in resources.files("projections.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def ddl(client: Client, statement: str, cluster: str | None = None) -> None:
    """Run one single-node DDL statement, in its cluster form (projections/cluster.py) when `cluster` is set."""
    for each in cluster_statements(statement, cluster) if cluster else [statement]:
        client.command(each)


def migrate(client: Client, database: str, cluster: str | None = None) -> list[str]:
    """Create the database, apply each table migration not applied yet, then (re)create the views.

    Safe to run again. The views are re-created every time: they hold no data, and ClickHouse keeps the
    database name inside them, which a replay's database rename would otherwise leave dangling. With a
    `cluster` (FOOTFALL_CLICKHOUSE_CLUSTER) every statement runs in its cluster form, from any one node."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} is not a plain identifier")
    if cluster is not None and not _IDENTIFIER.match(cluster):
        raise ValueError(f"cluster name {cluster!r} is not a plain identifier")
    ddl(client, f"CREATE DATABASE IF NOT EXISTS {database}", cluster)
    ddl(
        client,
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version",
        cluster,
    )
    applied = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
    done = []
    for version, name, sql in migrations():
        if version in applied:
            continue
        for statement in statements(sql):
            ddl(client, statement.replace("{db}", database), cluster)
        client.insert(f"{database}.schema_migrations", [[version, name]], column_names=["version", "name"])
        log.info("applied migration %s", name)
        done.append(name)
    create_views(client, database, cluster)
    return done


def create_views(client: Client, database: str, cluster: str | None = None) -> None:
    sql = resources.files("projections").joinpath("views.sql").read_text()
    for statement in statements(sql):
        ddl(client, statement.replace("{db}", database), cluster)
