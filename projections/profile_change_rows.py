"""The rows a profile change (schemas/profile_changes.py) projects into. Pure: no I/O.

- Every change, of every kind, is a `$` event in `events` (`$segment_entered`, `$stage_changed`, ...) so the
  person's timeline shows it: message_id is the change id and the timestamp the change's own time, so a
  change published twice, replayed or redelivered collapses into one row (events' replacing key).
- Segment enter and exit changes are also the periods of `segment_members`: an entry opens the row of
  (segment, person, entry number) at version 1, its exit closes the same row at version 2, so whichever
  arrives first (a replay, a redelivery) the closed period wins.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from projections.rows import EVENTS, TableSpec, epoch_ms
from schemas.profile_changes import ProfileChange, event_name_of
from schemas.segments import segment_change_id

SEGMENT_MEMBERS = TableSpec(
    "segment_members",
    (
        ("segment_id", "String"),
        ("person_id", "String"),
        ("entry", "UInt32"),
        ("entered_at", "DateTime64(3, 'UTC')"),
        ("exited_at", "Nullable(DateTime64(3, 'UTC'))"),
        ("entered_change_id", "String"),
        ("exited_change_id", "String"),
        ("version", "UInt8"),
    ),
)
CHANGE_EVENT_TYPE = "profile_change"  # events.type of the `$` rows
CHANGE_SOURCE_ID = "footfall"
assert len(EVENTS.column_names) == 19, "change_event_row follows events' columns"


def change_event_row(change: ProfileChange, partition: int, offset: int) -> list:
    """The change as an `events` row: distinct_id is the person id (the timeline finds it by person)."""
    properties = {
        "change_id": change.change_id,
        "kind": change.kind,
        "source": change.source,
        "subject": change.subject,
        "before": change.before,
        "after": change.after,
        **({"detail": change.detail} if change.detail else {}),
    }
    at = epoch_ms(change.at)
    return [
        change.change_id,
        at,
        at,
        CHANGE_EVENT_TYPE,
        event_name_of(change.kind),
        change.person_id,
        "",
        "",
        change.person_id,
        "",
        orjson.dumps(properties, default=str).decode(),
        "{}",
        "{}",
        CHANGE_SOURCE_ID,
        "",
        "",
        [],
        partition,
        offset,
    ]


def segment_member_row(change: ProfileChange) -> list | None:
    """The segment_members row of an enter or exit change (None for other kinds)."""
    if change.kind not in ("segment_entered", "segment_exited") or not change.subject:
        return None
    entry = int(change.detail.get("entry", 1))
    if change.kind == "segment_entered":
        return [change.subject, change.person_id, entry, epoch_ms(change.at), None, change.change_id, "", 1]
    entered = change.detail.get("entered_at")
    entered_ms = epoch_ms(datetime.fromisoformat(entered)) if isinstance(entered, str) else epoch_ms(change.at)
    entered_id = segment_change_id(change.subject, change.person_id, entry, "entered")
    return [change.subject, change.person_id, entry, entered_ms, epoch_ms(change.at), entered_id, change.change_id, 2]
