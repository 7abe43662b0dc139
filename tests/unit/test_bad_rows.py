"""The bad-row schema: version 1 records still read (their kind inferred), kinds follow the rules, payloads are bounded."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.rows import BAD_ROWS, bad_row_row
from schemas.bad_rows import (
    BAD_ROW_KINDS,
    MAX_PAYLOAD_CHARS,
    SCHEMA_VERSION,
    Problem,
    bounded_payload,
    identity_warning,
    kind_of,
    message_id_in,
    partition_mismatch,
    poison_message,
    property_violation,
    read_bad_row,
)

V1_ROWS = [
    ({"stage": "collector", "problems": [{"field": "body", "reason": "invalid JSON: unexpected character"}]}, "invalid_json"),
    ({"stage": "collector", "problems": [{"field": "event", "reason": "40000 bytes as written; the limit is 32768"}]}, "size_violation"),
    ({"stage": "collector", "problems": [{"field": "anonymousId", "reason": "a placeholder, not an id"}]}, "placeholder_id"),
    ({"stage": "collector", "problems": [{"field": "type", "reason": "Input should be 'track', 'identify'"}]}, "schema_violation"),
    ({"stage": "collector", "problems": [{"field": "body", "reason": "gzip body is truncated"}]}, "unreadable_body"),
    ({"stage": "processor", "problems": [{"field": "RawEvent", "reason": "not a RawEvent: Invalid JSON"}]}, "poison_message"),
    (
        {"stage": "processor", "problems": [{"field": "user_id", "reason": "'null' is a placeholder, not a distinct id; refused"}]},
        "placeholder_id",
    ),
    ({"stage": "projector", "problems": [{"field": "message", "reason": "unreadable on enriched"}]}, "poison_message"),
]


@pytest.mark.parametrize(("fields", "kind"), V1_ROWS, ids=[kind for _, kind in V1_ROWS])
def test_a_version_1_record_still_reads_with_its_kind_inferred(fields, kind):
    value = orjson.dumps({**fields, "source_id": "web", "received_at": "2026-01-02T03:04:05Z", "payload": "{}", "index": 2})
    row = read_bad_row(value)
    assert (row.schema_version, row.kind, row.index, row.rule) == (1, kind, 2, "unknown")
    assert row.field == fields["problems"][0]["field"]
    assert len(bad_row_row(row, 0, 7)) == len(BAD_ROWS.columns)


@pytest.mark.parametrize(
    ("rules", "kind"),
    [
        (["invalid_json"], "invalid_json"),
        (["not_base64"], "invalid_json"),
        (["invalid_gzip"], "unreadable_body"),
        (["body_too_large"], "size_violation"),
        (["nesting_over_limit"], "size_violation"),
        (["placeholder_id", "placeholder_id"], "placeholder_id"),
        (["missing", "string_too_long"], "schema_violation"),
    ],
)
def test_a_collector_refusal_is_typed_by_its_rules(rules, kind):
    assert kind_of([Problem(field="f", reason="r", rule=rule) for rule in rules]) == kind


@given(st.text(max_size=MAX_PAYLOAD_CHARS + 50))
def test_a_payload_is_cut_to_its_bound_and_the_cut_noted(text):
    bounded = bounded_payload(text)
    assert bounded["payload"] == text[:MAX_PAYLOAD_CHARS]
    assert bounded["payload_chars"] == len(text)
    assert bounded["payload_truncated"] == (len(text) > MAX_PAYLOAD_CHARS)


def test_a_long_poison_message_is_kept_cut_with_the_note():
    row = read_bad_row(poison_message("projector", b"x" * (MAX_PAYLOAD_CHARS + 10), "message", "unreadable", "enriched[1]@5"))
    assert row.payload_truncated and row.payload_chars == MAX_PAYLOAD_CHARS + 10 and len(row.payload) == MAX_PAYLOAD_CHARS
    assert (row.kind, row.rule, row.origin, row.schema_version) == ("poison_message", "unreadable_message", "enriched[1]@5", SCHEMA_VERSION)


def test_each_stream_constructor_writes_its_kind():
    command = orjson.dumps({"kind": "identify", "message_id": "m-1:identify"})
    made = {
        "poison_message": poison_message("processor", b"\xff", "RawEvent", "not a RawEvent"),
        "placeholder_id": identity_warning("processor", command, Problem(field="user_id", reason="placeholder", rule="placeholder_id")),
        "merge_refused": identity_warning("processor", command, Problem(field="user_id", reason="two accounts", rule="merge_refused")),
        "partition_mismatch": partition_mismatch("processor", b"{}", "key", "hashes to partition 2, read from 1", "raw[1]@3"),
        "property_violation": property_violation("collector", b"{}", [Problem(field="plan", reason="not one of a, b", rule="enum")]),
    }
    for kind, value in made.items():
        assert read_bad_row(value).kind == kind
    assert read_bad_row(made["placeholder_id"]).message_id == "m-1"
    assert set(made) <= set(BAD_ROW_KINDS)


def test_the_message_id_is_found_in_calls_and_records_only():
    assert message_id_in({"messageId": 42}) == "42"
    assert message_id_in(b'{"message_id": "m"}') == "m"
    assert message_id_in(b"not json") is None
    assert message_id_in({"messageId": True}) is None
    assert message_id_in([1, 2]) is None
