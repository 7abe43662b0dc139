"""What changed for a person: a profile's state before and after a batch → its changes for `profile-changes`.
Pure: no I/O (the projector publishes what this decides; schemas/profile_changes.py is the record).

Each change carries the id of its cause, never of the moment it was decided: the write that made it
(the command id or the event's message id, with the property, tag or list it concerns). Deciding again
from the same states, after a crash or on a redelivered batch, gives the same ids.

- properties: the resolved custom properties (latest write, else the earliest $set_once), one change per
  property whose value or presence differs, with its value before and after; the cause is the write that
  decided the new value (for a removal, the $unset).
- tags and status: the difference of the two sets (statuses); the cause is the tag's (status's) latest write.
- stage: every stage write that took effect after the batch and had not before, from the stage it left (several
  moves in one batch are several changes; a late write that lands before a published one re-bases it: that
  move is published again from its new previous stage, under a new id), with its source ("api", "import",
  "rule:<stage id>"), reason and direction.
- lists: every membership period opened or closed that was not before (an add and a remove in one batch are
  two changes).

A change's source: what made its write ("api", "import": the command's `by`), "collector" for tracking
calls, "merge" for a write that came with a merged profile. Derived values (email domain, counts, first
and last seen, location, device) are not published: they follow from the properties and the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from projections.profiles import REMOVED, Mark, ProfileState, list_writes, stage_writes, status_of, tags_of
from projections.rows import EPOCH, MILLISECOND
from schemas.events import EnrichedEvent
from schemas.lists import memberships
from schemas.profile_changes import ProfileChange, change_id_of
from schemas.stages import walk_stages
from schemas.user_commands import UserCommand

MERGE = "merge"
COLLECTOR = "collector"


@dataclass(frozen=True)
class Transition:
    """One person's state before a batch and after it."""

    person_id: str
    before: ProfileState
    after: ProfileState


def sources_of(events: Iterable[EnrichedEvent], commands: Iterable[UserCommand]) -> dict[str, str]:
    """Write id → what made it, for the writes of one batch."""
    sources = {event.message_id: COLLECTOR for event in events}
    sources.update((command.command_id, command.by or "api") for command in commands)
    return sources


def _time(ms: int) -> datetime:
    return EPOCH + ms * MILLISECOND


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


_ABSENT = object()


def _resolved(state: ProfileState) -> dict[str, Any]:
    resolved = {key: mark.value for key, mark in state.once.items() if key not in state.props}
    resolved.update((key, mark.value) for key, mark in state.props.items() if mark.value is not REMOVED)
    return resolved


def _property_changes(t: Transition, sources: Mapping[str, str]) -> list[ProfileChange]:
    if t.before.props == t.after.props and t.before.once == t.after.once:
        return []
    before, after = _resolved(t.before), _resolved(t.after)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old is not _ABSENT and new is not _ABSENT and _json(old) == _json(new):
            continue
        cause: Mark | None = t.after.props.get(key) or t.after.once.get(key)
        if cause is None:  # cannot happen while states only grow; kept safe rather than publishing an uncaused id
            continue
        changes.append(
            ProfileChange(
                change_id=change_id_of("property_changed", t.person_id, key, cause.at, cause.message_id),
                person_id=t.person_id,
                kind="property_changed",
                at=_time(cause.at),
                source=sources.get(cause.message_id, MERGE),
                subject=key,
                before=None if old is _ABSENT else old,
                after=None if new is _ABSENT else new,
                detail={"unset": new is _ABSENT, "was_set": old is not _ABSENT},
            )
        )
    return changes


def _tag_changes(t: Transition, sources: Mapping[str, str]) -> list[ProfileChange]:
    if t.before.tags == t.after.tags:
        return []
    before, after = set(tags_of(t.before)), set(tags_of(t.after))
    changes = []
    for kind, tags in (("tag_added", after - before), ("tag_removed", before - after)):
        for tag in sorted(tags):
            cause = t.after.tags[tag]
            changes.append(
                ProfileChange(
                    change_id=change_id_of(kind, t.person_id, tag, cause.at, cause.message_id),
                    person_id=t.person_id,
                    kind=kind,  # type: ignore[arg-type]  # one of the two literals above
                    at=_time(cause.at),
                    source=sources.get(cause.message_id, MERGE),
                    subject=tag,
                )
            )
    return changes


def _status_changes(t: Transition, sources: Mapping[str, str]) -> list[ProfileChange]:
    old, new = status_of(t.before), status_of(t.after)
    if old == new or t.after.status is None:
        return []
    cause = t.after.status
    return [
        ProfileChange(
            change_id=change_id_of("status_changed", t.person_id, cause.at, cause.message_id),
            person_id=t.person_id,
            kind="status_changed",
            at=_time(cause.at),
            source=sources.get(cause.message_id, MERGE),
            subject=new,
            before=old,
            after=new,
        )
    ]


def _stage_changes(t: Transition, rank: Mapping[str, int]) -> list[ProfileChange]:
    if t.before.stages == t.after.stages:
        return []
    done = {(e.write.command_id, e.from_stage) for e in walk_stages(stage_writes(t.before.stages))[1] if e.effective}
    changes = []
    for entry in walk_stages(stage_writes(t.after.stages))[1]:
        write = entry.write
        if not entry.effective or (write.command_id, entry.from_stage) in done:
            continue
        backward = rank.get(write.stage, -1) < rank.get(entry.from_stage, -1)
        changes.append(
            ProfileChange(
                change_id=change_id_of("stage_changed", t.person_id, write.command_id, entry.from_stage),
                person_id=t.person_id,
                kind="stage_changed",
                at=_time(write.at),
                source=write.by,
                subject=write.stage,
                before=entry.from_stage or None,
                after=write.stage,
                detail={"reason": write.reason, "direction": "backward" if backward else "forward"},
            )
        )
    return changes


def _list_events(state: ProfileState) -> set[tuple[str, str, int, str, str]]:
    """(kind, list id, at, command id, by) of every membership opened or closed."""
    found = set()
    for period in memberships(list_writes(state.lists))[0]:
        opened, closed = period.opened_by, period.closed_by
        found.add(("list_added", period.list_id, opened.at, opened.command_id, opened.by))
        if closed is not None:
            found.add(("list_removed", period.list_id, closed.at, closed.command_id, closed.by))
    return found


def _list_changes(t: Transition) -> list[ProfileChange]:
    if t.before.lists == t.after.lists:
        return []
    new = _list_events(t.after) - _list_events(t.before)
    return [
        ProfileChange(
            change_id=change_id_of(kind, t.person_id, list_id, command_id),
            person_id=t.person_id,
            kind=kind,  # type: ignore[arg-type]  # list_added / list_removed
            at=_time(at),
            source=by or "api",
            subject=list_id,
            detail={"by": by},
        )
        for kind, list_id, at, command_id, by in sorted(new, key=lambda e: (e[2], e[3], e[0], e[1]))
    ]


def profile_changes(transition: Transition, sources: Mapping[str, str], rank: Mapping[str, int]) -> list[ProfileChange]:
    """Every change from `before` to `after`, in a stable order (properties, tags, status, stage, lists).
    `sources`: write id → what made it (sources_of); `rank`: stage id → its position (schemas.stages.rank_of)."""
    if transition.before is transition.after:
        return []
    return [
        *_property_changes(transition, sources),
        *_tag_changes(transition, sources),
        *_status_changes(transition, sources),
        *_stage_changes(transition, rank),
        *_list_changes(transition),
    ]


def changes_of(transitions: Iterable[Transition], sources: Mapping[str, str], rank: Mapping[str, int]) -> list[ProfileChange]:
    return [change for transition in transitions for change in profile_changes(transition, sources, rank)]
