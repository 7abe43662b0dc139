"""Bad rows: input that a stage refused, kept with its reason on the dead-letter topic (as Snowplow does).

A bad row is data, not a log line: typed by a `kind` from a closed list, versioned, with the field and a
machine-readable rule for every problem and the original payload (bounded), so analysts can count refusals
(the `bad_rows` table) and operators can fix and re-send them (`footfall recover`).

Version 1 records (no `schema_version`, no `kind`, problems without a rule) still read: `read_bad_row`
upgrades them, inferring the kind from their stage and problems.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 2
MAX_PAYLOAD_CHARS = 64 * 1024

Stage = Literal["collector", "processor", "projector"]
BadRowKind = Literal[
    "invalid_json",  # the body (or a pixel's data) is not JSON
    "unreadable_body",  # the body could not be read: content type or encoding, broken gzip, too slow to arrive
    "schema_violation",  # a call breaks the tracking API's rules (a field missing, of the wrong type, ...)
    "size_violation",  # a body, batch, event, string or nesting depth over its bound
    "auth",  # a valid source's call from an origin the source does not list
    "rate_limited_dropped",  # a pixel call over a rate limit: a pixel is never retried, so the event is dropped
    "placeholder_id",  # an id missing or a placeholder ("undefined", "null", ...), refused by the collector or resolver
    "merge_refused",  # an identify the resolver refused: it would fuse two persons that both have a user id
    "property_violation",  # a property against its definition's constraints
    "poison_message",  # a Kafka message a consumer could not read
    "partition_mismatch",  # an event on a partition its key does not belong to
    "erased_identifier",  # a call from an identifier of an erased user: dropped at the collector, never projected
]
BAD_ROW_KINDS: tuple[str, ...] = get_args(BadRowKind)

# Rules the collector's own checks name (pydantic's error types name the rest: missing, string_too_long, ...).
INVALID_JSON_RULES = frozenset({"invalid_json", "empty_body", "not_base64"})
SIZE_RULES = frozenset({"body_too_large", "batch_too_long", "event_too_large", "string_over_limit", "key_over_limit", "nesting_over_limit"})
UNREADABLE_BODY_RULES = frozenset({"unsupported_content_type", "unsupported_content_encoding", "invalid_gzip", "body_timeout"})


class Problem(BaseModel):
    """One reason a payload was refused: which field, the rule it broke (stable, for machines) and why (for people)."""

    model_config = ConfigDict(frozen=True)

    field: str
    reason: str
    rule: str = "unknown"  # version 1 rows had no rule


class BadRow(BaseModel):
    """One refused payload. `payload` is the original input as text, cut to MAX_PAYLOAD_CHARS (then
    `payload_truncated` is set and `payload_chars` says how long it was); bytes that are not UTF-8 are escaped."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    kind: BadRowKind
    stage: Stage
    problems: list[Problem] = Field(min_length=1)
    source_id: str | None
    received_at: datetime
    payload: str
    payload_truncated: bool = False
    payload_chars: int = 0  # the payload's length before any cut
    index: int | None = None  # position in a batch request
    message_id: str | None = None  # the refused event's messageId, when it had one
    origin: str | None = None  # where a stream stage read it: "topic[partition]@offset"

    @model_validator(mode="before")
    @classmethod
    def _upgrade_version_1(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema_version" not in data and "kind" not in data:  # every version 2 row has a kind
            problems = [p if isinstance(p, dict) else {} for p in data.get("problems") or []]
            data = {**data, "schema_version": 1, "kind": infer_kind(data.get("stage"), problems)}
            data.setdefault("payload_chars", len(data.get("payload") or ""))
        return data

    @property
    def field(self) -> str:
        return self.problems[0].field

    @property
    def rule(self) -> str:
        return self.problems[0].rule

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def read_bad_row(value: bytes) -> BadRow:
    """A dead-letter record of any version (pydantic's ValidationError when it is none)."""
    return BadRow.model_validate_json(value)


def infer_kind(stage: Any, problems: list[dict[str, Any]]) -> str:
    """The kind of a version 1 row, from what it said."""
    text = " ".join(f"{p.get('field', '')} {p.get('reason', '')}" for p in problems).lower()
    if "placeholder" in text:
        return "placeholder_id"
    if stage in ("processor", "projector"):
        return "poison_message"
    if "invalid json" in text or "not base64" in text or "empty body" in text:
        return "invalid_json"
    if "limit" in text or "longer than" in text or "deeper than" in text:
        return "size_violation"
    if "gzip" in text or "content type" in text or "content encoding" in text or "timed out" in text:
        return "unreadable_body"
    return "schema_violation"


def kind_of(problems: list[Problem]) -> BadRowKind:
    """The kind of a collector refusal, from its problems' rules (the first problem leads)."""
    rules = {p.rule for p in problems}
    if rules & INVALID_JSON_RULES:
        return "invalid_json"
    if rules & UNREADABLE_BODY_RULES:
        return "unreadable_body"
    if rules & SIZE_RULES:
        return "size_violation"
    if "placeholder_id" in rules:
        return "placeholder_id"
    return "schema_violation"


def bounded_payload(text: str) -> dict[str, Any]:
    """The payload fields of a row: cut to MAX_PAYLOAD_CHARS, noting the cut."""
    return {"payload": text[:MAX_PAYLOAD_CHARS], "payload_truncated": len(text) > MAX_PAYLOAD_CHARS, "payload_chars": len(text)}


def message_id_in(payload: Any) -> str | None:
    """The messageId a refused payload carries (a call's `messageId`, a stream record's `message_id`), if any."""
    if isinstance(payload, bytes | str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
    if isinstance(payload, dict):
        found = payload.get("messageId", payload.get("message_id"))
        if isinstance(found, str | int) and not isinstance(found, bool):
            return str(found)[:200]
    return None


def stream_bad_row(
    kind: BadRowKind, stage: Stage, payload: bytes | None, problem: Problem, origin: str | None = None, source_id: str | None = None
) -> BadRow:
    """A message a stream stage (processor, projector) refused, as the dead-letter topic keeps it."""
    raw = payload or b""
    return BadRow(
        kind=kind,
        stage=stage,
        problems=[problem],
        source_id=source_id,
        received_at=datetime.now(UTC),
        message_id=message_id_in(raw),
        origin=origin,
        **bounded_payload(raw.decode("utf-8", "backslashreplace")),
    )


# -- one constructor per kind a stream stage produces (the collector builds its rows from its problems) --------


def poison_message(stage: Stage, payload: bytes | None, field: str, reason: str, origin: str | None = None) -> bytes:
    """A message its consumer could not read: recorded and skipped, never retried forever."""
    return stream_bad_row(
        "poison_message", stage, payload, Problem(field=field, reason=reason[:500], rule="unreadable_message"), origin
    ).encode()


def identity_warning(stage: Stage, payload: bytes | None, problem: Problem) -> bytes:
    """A command the identity resolver refused in part: a placeholder or missing id, or a merge it would not make."""
    kind: BadRowKind = "merge_refused" if problem.rule == "merge_refused" else "placeholder_id"
    row = stream_bad_row(kind, stage, payload, problem)
    if row.message_id and ":" in row.message_id:  # a command's id is "<the event's messageId>:<command kind>"
        row = row.model_copy(update={"message_id": row.message_id.rsplit(":", 1)[0]})
    return row.encode()


def partition_mismatch(stage: Stage, payload: bytes | None, field: str, reason: str, origin: str | None = None) -> bytes:
    """An event on a partition its key does not hash to: its state would land in another partition's store."""
    return stream_bad_row(
        "partition_mismatch", stage, payload, Problem(field=field, reason=reason, rule="partition_of_key"), origin
    ).encode()


def property_violation(stage: Stage, payload: bytes | None, problems: list[Problem], source_id: str | None = None) -> bytes:
    """A property value against its definition's constraints (each problem names the property and the rule)."""
    row = stream_bad_row("property_violation", stage, payload, problems[0], source_id=source_id)
    return row.model_copy(update={"problems": problems}).encode()
