"""Removing a deleted person's rows on ClickHouse (chdb): the persons merged into it go with every row of
theirs, so none of their older versions is left as the latest (a ghost profile after the delete)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projections.removals import remove_person_rows
from schemas.user_commands import UserCommand

pytestmark = pytest.mark.integration


def test_a_deleted_persons_merged_persons_leave_no_older_row_behind(clickhouse_client, database):
    columns = ["person_id", "version", "is_deleted", "merged_into"]
    rows = [
        ["stand-in", 1, 0, ""],  # a device's profile before its mapping arrived ...
        ["stand-in", 2, 1, "person"],  # ... folded into the person once it did
        ["merged", 1, 0, ""],  # a person merged by an alias ...
        ["merged", 2, 1, "person"],  # ... and its merge
        ["person", 3, 0, ""],
        ["bystander", 1, 0, ""],
    ]
    # Every version in one part, none replaced on insert: as the projector's batches leave them until a merge.
    clickhouse_client.insert(f"{database}.persons", rows, column_names=columns, settings={"optimize_on_insert": 0})
    assert clickhouse_client.query(f"SELECT count() FROM {database}.persons").result_rows == [(6,)]
    clickhouse_client.insert(f"{database}.person_overrides", [["merged", "person"]], column_names=["from_person", "into_person"])

    remove_person_rows(clickhouse_client, database, UserCommand(kind="delete", command_id="c1", person_id="person", at=datetime.now(UTC)))

    left = clickhouse_client.query(f"SELECT person_id FROM {database}.persons FINAL ORDER BY person_id").result_rows
    assert left == [("bystander",)]
