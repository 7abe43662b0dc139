"""The recovery's pure part: which bad rows it takes, skips or still refuses, and that it decides the same way twice."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from ingest.recovery import recover_rows
from ingest.sources import Source, SourceRegistry
from schemas.bad_rows import BadRow, Problem, poison_message

SOURCES = SourceRegistry([Source(id="web", write_key="k")])
AT = datetime(2026, 5, 1, 12, tzinfo=UTC)
PROBLEM = Problem(field="event", reason="required for track", rule="required")


def row(payload: object, **changes: object) -> bytes:
    text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    fields = {
        "kind": "schema_violation",
        "stage": "collector",
        "problems": [PROBLEM],
        "source_id": "web",
        "received_at": AT,
        "payload": text,
        "payload_chars": len(text),
    }
    return BadRow(**{**fields, **changes}).encode()


def name_it(payload, _row):
    return {**payload, "event": "Fixed"} if isinstance(payload, dict) else None


def test_fixed_still_bad_and_skipped_rows_and_the_same_records_twice():
    call = {"type": "track", "anonymousId": "a"}
    rows = [
        ("0@0", row({**call, "messageId": "m-1"})),
        ("0@1", row(call)),  # no messageId: one derived from its place in the topic
        ("0@2", row({"type": "track"})),  # still bad: no id at all
        ("0@3", row(call, payload_truncated=True)),
        ("0@4", row(call, source_id=None)),
        ("0@5", row(call, source_id="gone")),
        ("0@6", row("{not json")),  # the fix gives up on it
        ("0@7", row(call, kind="size_violation")),  # not selected
        ("0@8", poison_message("processor", b"x", "RawEvent", "unreadable")),
        ("0@9", b"not a bad row"),
    ]
    first, records = recover_rows(iter(rows), name_it, SOURCES, "raw", kinds={"schema_violation"})
    again, records_again = recover_rows(iter(rows), name_it, SOURCES, "raw", kinds={"schema_violation"})
    assert (first.fixed, len(first.still_bad), sum(first.skipped.values())) == (2, 1, 4)
    assert set(first.skipped) == {"payload cut to its bound", "no known source", "the fix returned None"}
    assert first.still_bad[0].position == "0@2" and first.still_bad[0].problems[0].field == "userId or anonymousId"
    assert records == records_again
    events = [orjson.loads(r.value) for r in records]
    assert events[0]["message_id"] == "m-1" and events[1]["message_id"] == first.message_ids[1]
    assert all(e["received_at"].startswith("2026-05-01T12:00:00") and e["source_id"] == "web" and e["event"] == "Fixed" for e in events)


def test_rows_before_since_or_of_another_source_are_not_selected():
    rows = [("0@0", row({"type": "track", "anonymousId": "a"}))]
    later, _ = recover_rows(iter(rows), name_it, SOURCES, "raw", kinds={"schema_violation"}, since=datetime(2027, 1, 1, tzinfo=UTC))
    other, _ = recover_rows(iter(rows), name_it, SOURCES, "raw", kinds={"schema_violation"}, source_id="app")
    assert later.as_json()["fixed"] == other.as_json()["fixed"] == 0
