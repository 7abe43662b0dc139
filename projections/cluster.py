"""The migrations on a ClickHouse cluster (FOOTFALL_CLICKHOUSE_CLUSTER): one rewrite of the single-node DDL.

Every migration file stays single-node SQL; `cluster_statements` turns each statement into its cluster form,
so a new migration needs no hand-kept cluster copy:

- every CREATE/DROP/RENAME/ALTER runs ON CLUSTER;
- every *MergeTree becomes Replicated*MergeTree, its Keeper path keyed by the table's UUID (a replay's
  database rename never collides with the paths of the tables it replaced);
- the tables in SHARDED (events and sessions, and the daily counts the events' materialized view fills) become
  `<name>_local` on every shard, behind a Distributed table with the original name, sharded by the key given,
  so the projector and every query keep using the same names. All rows of one replacing key land on one shard,
  so FINAL and the replacing engines still collapse them;
- every other table (persons, person_distinct_ids, the override tables: what queries join against) is replicated
  to every node, as PostHog does, so a join on a shard finds every row locally;
- a materialized view reads and writes the local tables of the shard the insert reached.

Inserts through Distributed tables must be synchronous (`distributed_foreground_insert`, set by `connect`), so a
committed Kafka offset never runs ahead of data that is still queued on a node.
"""

from __future__ import annotations

import re

# Table → sharding expression. Everything else that is a MergeTree is replicated to every node.
SHARDED = {
    "events": "sipHash64(distinct_id)",
    "sessions": "sipHash64(session_id)",
    "event_counts_daily_by_distinct_id": "sipHash64(distinct_id)",
}
LOCAL_SUFFIX = "_local"
SHARDED_PATH = "/clickhouse/tables/{uuid}/{shard}"
EVERY_NODE_PATH = "/clickhouse/tables/{uuid}/all"
EVERY_NODE_REPLICA = "{shard}-{replica}"
INSERT_SETTINGS = {"distributed_foreground_insert": 1}

_NAME = r"(?P<db>[A-Za-z_][A-Za-z0-9_]*)\.(?P<table>[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_NAME}", re.I)
_CREATE_VIEW = re.compile(rf"^CREATE\s+(?P<kind>MATERIALIZED\s+VIEW|VIEW)\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_NAME}", re.I)
_DROP = re.compile(rf"^DROP\s+(?P<kind>TABLE|VIEW|DICTIONARY)\s+(?P<ie>IF\s+EXISTS\s+)?{_NAME}", re.I)
_ALTER = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}", re.I)
_DATABASE = re.compile(r"^(?P<verb>CREATE|DROP)\s+DATABASE\s+(?P<cond>IF\s+(?:NOT\s+)?EXISTS\s+)?(?P<db>[A-Za-z_][A-Za-z0-9_]*)", re.I)
_RENAME_DATABASE = re.compile(r"^RENAME\s+DATABASE\s+(?P<a>[A-Za-z_][A-Za-z0-9_]*)\s+TO\s+(?P<b>[A-Za-z_][A-Za-z0-9_]*)", re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<engine>[A-Za-z]*MergeTree)\b(?:\s*\((?P<args>[^()]*)\))?", re.I)
_NON_REPLICATED_SETTING = re.compile(r"non_replicated_deduplication_window", re.I)


def on_cluster(cluster: str) -> str:
    return f" ON CLUSTER '{cluster}'"


def local_name(table: str) -> str:
    return table + LOCAL_SUFFIX


def cluster_statements(statement: str, cluster: str) -> list[str]:
    """The cluster form of one single-node DDL statement (one or more statements)."""
    statement = statement.strip()
    if match := _CREATE_TABLE.match(statement):
        return _create_table(statement, match, cluster)
    if match := _CREATE_VIEW.match(statement):
        return [_with_local_sources(_add_on_cluster(statement, match.end(), cluster), match["db"])]
    if match := _DROP.match(statement):
        return [_add_on_cluster(statement, match.end(), cluster)]
    if match := _ALTER.match(statement):
        table = match["table"]
        if table in SHARDED:  # the change applies to the shards' tables and to the Distributed table over them
            local = statement[: match.start("table")] + local_name(table) + statement[match.end("table") :]
            return [_add_on_cluster(local, match.end() + len(LOCAL_SUFFIX), cluster), _add_on_cluster(statement, match.end(), cluster)]
        return [_add_on_cluster(statement, match.end(), cluster)]
    if match := _DATABASE.match(statement):
        return [_add_on_cluster(statement, match.end(), cluster)]
    if match := _RENAME_DATABASE.match(statement):
        return [_add_on_cluster(statement, match.end(), cluster)]
    return [statement]


def _add_on_cluster(statement: str, at: int, cluster: str) -> str:
    return statement[:at] + on_cluster(cluster) + statement[at:]


def _create_table(statement: str, match: re.Match, cluster: str) -> list[str]:
    db, table = match["db"], match["table"]
    engine = _ENGINE.search(statement)
    if engine is None:  # not a MergeTree (a Distributed, Memory, ... table): only ON CLUSTER
        return [_add_on_cluster(statement, match.end(), cluster)]
    sharded = table in SHARDED
    path, replica = (SHARDED_PATH, "{replica}") if sharded else (EVERY_NODE_PATH, EVERY_NODE_REPLICA)
    args = ", ".join(arg for arg in (f"'{path}'", f"'{replica}'", (engine["args"] or "").strip()) if arg)
    replicated = f"ENGINE = Replicated{engine['engine']}({args})"
    body = statement[: engine.start()] + replicated + statement[engine.end() :]
    body = _NON_REPLICATED_SETTING.sub("replicated_deduplication_window", body)
    if not sharded:
        return [_add_on_cluster(body, match.end(), cluster)]
    local = body[: match.start("table")] + local_name(table) + body[match.end("table") :]
    ine = "IF NOT EXISTS " if match["ine"] else ""
    distributed = (
        f"CREATE TABLE {ine}{db}.{table}{on_cluster(cluster)} AS {db}.{local_name(table)} "
        f"ENGINE = Distributed('{cluster}', '{db}', '{local_name(table)}', {SHARDED[table]})"
    )
    return [_add_on_cluster(local, match.end() + len(LOCAL_SUFFIX), cluster), distributed]


def _with_local_sources(statement: str, db: str) -> str:
    """A materialized view fires on the inserts each shard receives, into that shard's tables: it must read and
    write the local tables. Plain views query the Distributed ones."""
    if not re.match(r"^CREATE\s+MATERIALIZED\s+VIEW", statement, re.I):
        return statement
    for table in SHARDED:
        statement = re.sub(rf"\b{db}\.{table}\b(?!{LOCAL_SUFFIX})", f"{db}.{local_name(table)}", statement)
    return statement
