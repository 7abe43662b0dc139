"""SCHEMA.md's example queries run, unchanged but for the database name, against the real engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCHEMA_DOC = Path(__file__).resolve().parents[2] / "SCHEMA.md"
QUERIES = re.findall(r"```sql\n(.*?)```", SCHEMA_DOC.read_text(), flags=re.S)


def test_the_document_has_the_example_queries():
    assert len(QUERIES) == 23


@pytest.mark.parametrize("block", QUERIES, ids=[f"example-{i}" for i in range(len(QUERIES))])
def test_each_example_query_runs(clickhouse_client, database, block):
    for statement in filter(None, (s.strip() for s in block.split(";"))):
        clickhouse_client.query(statement.replace("footfall.", f"{database}."))


def test_events_resolved_keeps_the_events_column_names(clickhouse_client, database):
    columns = clickhouse_client.query(f"SELECT * FROM {database}.events_resolved LIMIT 0").column_names
    events = clickhouse_client.query(f"SELECT * FROM {database}.events LIMIT 0").column_names
    assert list(columns) == [*events, "live_person_id", "live_session_id"]
