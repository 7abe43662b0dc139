"""One definition of each record, held to the others: the tracking call, the raw record the collector writes,
the event models, every table's column spec, the rows the code writes and the migrations' DDL (real engine)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from ingest.normalize import Edge, normalize
from projections.companies import (
    COMPANIES,
    COMPANY_COMMANDS,
    COMPANY_MEMBERS,
    company_command_row,
    company_of_command,
    company_row,
    member_row,
    membership_of_command,
)
from projections.groups import LIFECYCLE_STAGES, LIST_MEMBERS, LISTS, STAGE_HISTORY, group_rows, lifecycle_stage_row, list_row
from projections.objects import OBJECT_COMMANDS, OBJECT_LINKS, OBJECTS, link_rows, object_command_row, object_row
from projections.profile_change_rows import SEGMENT_MEMBERS, change_event_row, segment_member_row
from projections.profiles import EMPTY, PERSONS, apply_command, person_row
from projections.rows import (
    BAD_ROWS,
    ERASURES,
    EVENT_FIELDS_NOT_STORED,
    EVENTS,
    PERSON_DISTINCT_IDS,
    PERSON_OVERRIDES,
    SESSION_OVERRIDES,
    SESSIONS,
    USER_COMMANDS,
    TableSpec,
    bad_row_row,
    epoch_ms,
    erasure_row,
    event_row,
    mapping_row,
    person_override_row,
    session_override_row,
    session_row,
    user_command_row,
)
from projections.webhook_deliveries import WEBHOOK_DELIVERIES, delivery_row
from schemas.bad_rows import BadRow, Problem
from schemas.companies import CompanyCommand
from schemas.conditions import ConditionGroup, PropertyCondition
from schemas.events import EnrichedEvent, RawEvent
from schemas.identity import DistinctIdMapping, PersonIdentity
from schemas.lists import ListDefinition
from schemas.objects import Link, ObjectCommand, state_of_command
from schemas.profile_changes import ProfileChange
from schemas.sessions import SessionUpdate
from schemas.stages import StageDefinition
from schemas.tracking import TrackingCall
from schemas.user_commands import UserCommand
from schemas.webhooks import DeliveryAttempt

AT = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
COMMAND = UserCommand(kind="delete", command_id="c-1", person_id="pp-1", at=AT, id_digests=["sha256:ab"], job_id="j-1")
EVENT = EnrichedEvent(
    message_id="m-1",
    type="track",
    event="Bought",
    anonymous_id="a-1",
    user_id="u-1",
    previous_id="p-1",
    group_id="g-1",
    timestamp=AT,
    received_at=AT,
    sent_at=AT,
    original_timestamp=AT,
    properties={"plan": "pro"},
    traits={"name": "Ann"},
    context={"page": {"url": "https://shop.example/"}},
    source_id="web",
    ip="192.0.2.1",
    user_agent="curl/8",
    flags=["future_timestamp_clamped"],
    session_id="s-1",
    session_seq=3,
    person_id="pp-1",
)
SESSION = SessionUpdate(
    session_id="s-1",
    device_key="a-1",
    version=4,
    status="open",
    start=AT,
    end=AT,
    duration_seconds=12.5,
    event_count=3,
    pageview_count=2,
    bounced=False,
    entry_url="https://shop.example/",
    exit_url="https://shop.example/cart",
    referrer="https://r.example/",
    referring_domain="r.example",
    utm_source="news",
    utm_medium="email",
    utm_campaign="spring",
    utm_term="t",
    utm_content="c",
    browser="Firefox",
    os="Linux",
    device_type="Desktop",
    distinct_id="u-1",
    late_event_count=1,
)
BAD = BadRow(
    kind="schema_violation",
    stage="collector",
    problems=[Problem(field="event", reason="required for track", rule="required")],
    source_id="web",
    received_at=AT,
    payload='{"type":"track"}',
    payload_chars=16,
    index=2,
    message_id="m-2",
)
COMPANY_UPSERT = CompanyCommand(
    kind="upsert", command_id="cc-1", company_id="acme", at=AT, set={"name": "Acme", "website": "https://www.acme.example/"}
)
MEMBER_ADD = CompanyCommand(kind="member_add", command_id="cc-2", company_id="acme", at=AT, person_id="pp-1", role="buyer", primary=True)

GROUPED = apply_command(
    apply_command(
        EMPTY,
        UserCommand(
            kind="update",
            command_id="c-2",
            person_id="pp-1",
            at=AT,
            stage="lead",
            stage_by="api",
            stage_reason="called us",
            lists_add=["l-1"],
            lists_by="ann",
        ),
    ),
    UserCommand(kind="update", command_id="c-3", person_id="pp-1", at=AT.replace(second=9), lists_remove=["l-1"], lists_by="bob"),
)
GROUPED_ROW = person_row("pp-1", GROUPED, None, 0, 0, 9)
HISTORY_ROWS, MEMBER_ROWS = group_rows([GROUPED_ROW])
OBJECT_CREATE = ObjectCommand(
    kind="create",
    command_id="o-1",
    object_type="deal",
    object_id="d-1",
    at=AT,
    set={"amount": 100},
    stage="won",
    closed=True,
    owner="alice",
    due_at=AT,
    links=[Link(kind="user", id="pp-1")],
)
RULE = ConditionGroup(conditions=[PropertyCondition(property="email", operator="is_set")])
SEGMENT_EXIT = ProfileChange(
    change_id="ch-1",
    person_id="pp-1",
    kind="segment_exited",
    at=AT.replace(second=30),
    source="segment:s-1",
    subject="s-1",
    detail={"entry": 2, "entered_at": AT.isoformat()},
)

# Every table the code writes, with one row of it as the code builds it.
WRITTEN: dict[str, tuple[TableSpec, list]] = {
    "events": (EVENTS, event_row(EVENT, 1, 42)),
    "sessions": (SESSIONS, session_row(SESSION)),
    "session_overrides": (SESSION_OVERRIDES, session_override_row("s-0", "s-1", 5)),
    "person_distinct_ids": (PERSON_DISTINCT_IDS, mapping_row(DistinctIdMapping(distinct_id="a-1", person_id="pp-1", version=6))),
    "person_overrides": (PERSON_OVERRIDES, person_override_row("pp-0", "pp-1", AT, 7)),
    "persons": (
        PERSONS,
        person_row(
            "pp-1", EMPTY, PersonIdentity(person_id="pp-1", visitor_number=9, identified=True, is_contact=False, version=8), 3, 1, 8
        ),
    ),
    "bad_rows": (BAD_ROWS, bad_row_row(BAD, 0, 11)),
    "user_commands": (USER_COMMANDS, user_command_row(COMMAND, 1_700_000_000_123)),
    "erasures": (ERASURES, erasure_row(COMMAND.model_copy(update={"kind": "erase"}))),
    "stage_history": (STAGE_HISTORY, HISTORY_ROWS[0]),
    "list_members": (LIST_MEMBERS, MEMBER_ROWS[0]),
    "lists": (LISTS, list_row(ListDefinition(id="l-1", name="VIPs", version=2, created_at=AT, updated_at=AT))),
    "lifecycle_stages": (
        LIFECYCLE_STAGES,
        lifecycle_stage_row(StageDefinition(id="lead", name="Lead", order=20, rule=RULE, version=3, updated_at=AT)),
    ),
    "companies": (COMPANIES, company_row("acme", company_of_command(COMPANY_UPSERT), 2, epoch_ms(AT), 9)),
    "company_members": (COMPANY_MEMBERS, member_row("acme", "pp-1", membership_of_command(MEMBER_ADD), None, False, 10)),
    "company_commands": (COMPANY_COMMANDS, company_command_row(MEMBER_ADD, 1_700_000_000_456)),
    "segment_members": (SEGMENT_MEMBERS, segment_member_row(SEGMENT_EXIT)),
    "webhook_deliveries": (
        WEBHOOK_DELIVERIES,
        delivery_row(
            DeliveryAttempt(
                webhook_id="w-1",
                change_id="c-1",
                person_id="pp-1",
                kind="tag_added",
                attempt=3,
                status="dead_lettered",
                http_status=500,
                error="HTTP 500",
                duration_ms=12.5,
                at=AT,
                url="https://example.com/hook",
                change=ProfileChange(change_id="c-1", person_id="pp-1", kind="tag_added", at=AT, source="api", subject="vip"),
            )
        ),
    ),
    "objects": (OBJECTS, object_row(("deal", "d-1"), state_of_command(OBJECT_CREATE), 11)),
    "object_links": (OBJECT_LINKS, link_rows(("deal", "d-1"), state_of_command(OBJECT_CREATE), 12)[0]),
    "object_commands": (OBJECT_COMMANDS, object_command_row(OBJECT_CREATE, 1_700_000_000_789)),
}
# Written by a materialized view over events (views.sql), not by the code.
WRITTEN_BY_VIEWS = {"event_counts_daily_by_distinct_id"}


def test_every_table_is_written_by_a_spec_here_or_by_a_view(clickhouse_client, database):
    tables = clickhouse_client.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT LIKE '%View' AND name != 'schema_migrations'",
        parameters={"db": database},
    ).result_rows
    assert {name for (name,) in tables} == set(WRITTEN) | WRITTEN_BY_VIEWS


@pytest.mark.parametrize("table", sorted(WRITTEN))
def test_the_ddl_is_the_column_spec(clickhouse_client, database, table):
    spec, _row = WRITTEN[table]
    described = clickhouse_client.query(f"DESCRIBE TABLE {database}.{table}").result_rows
    assert tuple((name, kind) for name, kind, *_ in described) == spec.columns


@pytest.mark.parametrize("table", sorted(WRITTEN))
def test_a_row_the_code_builds_goes_in_and_reads_back_the_same(clickhouse_client, database, table):
    spec, row = WRITTEN[table]
    assert len(row) == len(spec.columns)
    clickhouse_client.insert(f"{database}.{table}", [row], column_names=spec.column_names, column_type_names=spec.column_types)
    [read] = clickhouse_client.query(f"SELECT {', '.join(f'`{c}`' for c in spec.column_names)} FROM {database}.{table}").result_rows
    for (name, kind), written, back in zip(spec.columns, row, read, strict=True):
        if "DateTime64" in kind and back is not None:  # written as epoch milliseconds or as a datetime
            back, written = epoch_ms(back), written if isinstance(written, int) else epoch_ms(written)
        assert back == written, f"{table}.{name}: wrote {written!r}, read {back!r}"


def test_every_event_field_is_a_column_or_said_not_to_be():
    fields = set(EnrichedEvent.model_fields)
    columns = set(EVENTS.column_names) - {"_partition", "_offset", "distinct_id"}  # distinct_id: RawEvent.distinct_id, derived
    assert columns <= fields
    assert fields - columns == set(EVENT_FIELDS_NOT_STORED)


def test_the_collectors_record_is_the_raw_event_field_for_field():
    """normalize writes the raw topic's JSON by hand (speed): it must be exactly RawEvent, nothing dropped or added."""
    call = {
        "type": "track",
        "event": "Bought",
        "anonymousId": "a-1",
        "userId": "u-1",
        "previousId": "p-1",
        "groupId": "g-1",
        "messageId": "m-1",
        "properties": {"plan": "pro"},
        "traits": {"name": "Ann"},
        "context": {"userAgent": "curl/8"},
        "timestamp": "2026-03-04T05:06:07Z",
        "sentAt": "2026-03-04T05:06:08Z",
    }
    value = normalize(call, Edge(source_id="web", received_at=AT, ip="192.0.2.1", user_agent=None)).value
    record = orjson.loads(value)
    assert set(record) == set(RawEvent.model_fields)
    assert RawEvent.model_validate_json(value).model_dump(mode="json") == RawEvent.model_validate(record).model_dump(mode="json")
    assert orjson.loads(RawEvent.model_validate_json(value).model_dump_json()) == {
        **record,
        "timestamp": record["timestamp"].replace("+00:00", "Z"),
        "received_at": record["received_at"].replace("+00:00", "Z"),
        "sent_at": record["sent_at"].replace("+00:00", "Z"),
        "original_timestamp": record["original_timestamp"].replace("+00:00", "Z"),
    }


def test_every_field_of_a_call_reaches_the_record_or_is_said_not_to():
    """The tracking call's fields, by the record field each becomes (None: not kept)."""
    becomes = {
        "type": "type",
        "messageId": "message_id",
        "anonymousId": "anonymous_id",
        "userId": "user_id",
        "previousId": "previous_id",
        "groupId": "group_id",
        "event": "event",
        "name": "event",
        "properties": "properties",
        "traits": "traits",
        "context": "context",
        "timestamp": "original_timestamp",
        "originalTimestamp": "original_timestamp",
        "sentAt": "sent_at",
        "category": None,  # Segment's page category: not kept
        "integrations": None,  # destinations' switches for Segment's own forwarding: nothing to forward here
    }
    assert set(becomes) == set(TrackingCall.model_fields)
    assert {target for target in becomes.values() if target} <= set(RawEvent.model_fields)


def test_a_profile_change_is_an_events_row(clickhouse_client, database):
    """The `$` row of a change goes into events as the code builds it, and reads back with its name and person."""
    clickhouse_client.insert(
        f"{database}.events",
        [change_event_row(SEGMENT_EXIT, 0, 7)],
        column_names=EVENTS.column_names,
        column_type_names=EVENTS.column_types,
    )
    rows = clickhouse_client.query(f"SELECT message_id, event, distinct_id, person_id, type FROM {database}.events").result_rows
    assert rows == [("ch-1", "$segment_exited", "pp-1", "pp-1", "profile_change")]
