"""Removing a deleted or erased person's rows from every table (the live side of projections/directory.py).

A delete at time T removes what was received until T: events, sessions that started by then, the daily
counts (rebuilt from the events that remain), the person's merge records, its profile rows and those of
the persons merged into it (every version, so no old `_state` lingers), its stage history, list and segment
memberships. An erasure removes all of it whenever received, and the distinct id mappings too (a delete
leaves those to the identity sequencer's deleted mappings). ClickHouse's lightweight deletes hide the rows at
once and drop them from disk at the next merge of their parts.

The person's identifiers are every distinct id ever mapped to it or stamped on its events: the command
itself carries only their digests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.user_commands import UserCommand, id_digest

_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


def identifiers_of(client: Client, database: str, person_id: str, digests: set[str]) -> list[str]:
    """Every distinct id that belonged to the person, and any projected id whose digest the command names."""
    found = client.query(
        f"SELECT DISTINCT distinct_id FROM {database}.person_distinct_ids WHERE person_id = {{p:String}} "
        f"UNION DISTINCT SELECT DISTINCT distinct_id FROM {database}.events WHERE person_id = {{p:String}}",
        parameters={"p": person_id},
    ).result_rows
    ids = {row[0] for row in found}
    if digests:
        by_digest = client.query(
            f"SELECT DISTINCT distinct_id FROM {database}.person_distinct_ids WHERE lower(hex(SHA256(distinct_id))) IN {{d:Array(String)}}",
            parameters={"d": sorted(digests)},
        ).result_rows
        ids |= {row[0] for row in by_digest if id_digest(row[0]) in digests}
    return sorted(ids)


def merged_into(client: Client, database: str, person_id: str) -> list[str]:
    """The persons merged into this one (by a merge or as a stand-in): every row of theirs goes with it, not only
    the tombstone saying where they went, or an older live row of theirs would be the latest left (a ghost)."""
    found = client.query(
        f"SELECT DISTINCT person_id FROM {database}.persons WHERE merged_into = {{p:String}} "
        f"UNION DISTINCT SELECT DISTINCT from_person FROM {database}.person_overrides WHERE into_person = {{p:String}}",
        parameters={"p": person_id},
    ).result_rows
    return sorted({row[0] for row in found} - {person_id})


def remove_person_rows(client: Client, database: str, command: UserCommand) -> None:
    person = command.person_id
    ids = identifiers_of(client, database, person, set(command.id_digests))
    until = _FAR_FUTURE if command.kind == "erase" else command.at
    parameters = {
        "ids": ids,
        "p": person,
        "merged": merged_into(client, database, person),
        "until": until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
    }
    statements = [
        f"DELETE FROM {database}.events WHERE (distinct_id IN {{ids:Array(String)}} OR person_id = {{p:String}}) "
        "AND received_at <= {until:DateTime64(3, 'UTC')}",
        f"DELETE FROM {database}.sessions WHERE (device_key IN {{ids:Array(String)}} OR distinct_id IN {{ids:Array(String)}}) "
        "AND start <= {until:DateTime64(3, 'UTC')}",
        f"DELETE FROM {database}.event_counts_daily_by_distinct_id WHERE distinct_id IN {{ids:Array(String)}}",
        f"DELETE FROM {database}.person_overrides WHERE from_person = {{p:String}} OR into_person = {{p:String}}",
        f"DELETE FROM {database}.persons WHERE person_id = {{p:String}} OR person_id IN {{merged:Array(String)}}",
        f"DELETE FROM {database}.stage_history WHERE person_id = {{p:String}}",
        f"DELETE FROM {database}.list_members WHERE person_id = {{p:String}}",
        f"DELETE FROM {database}.segment_members WHERE person_id = {{p:String}}",
    ]
    if command.kind == "erase":
        statements.append(f"DELETE FROM {database}.person_distinct_ids WHERE distinct_id IN {{ids:Array(String)}}")
    for statement in statements:
        client.command(statement, parameters=parameters)
    # The daily counts of these ids again, from the events that remain (a delete keeps what came after it).
    client.command(
        f"INSERT INTO {database}.event_counts_daily_by_distinct_id "
        f"SELECT toDate(timestamp) AS day, distinct_id, event, type, uniqExactState(message_id) FROM {database}.events "
        "WHERE distinct_id IN {ids:Array(String)} GROUP BY day, distinct_id, event, type",
        parameters=parameters,
    )
