"""Deals, activities, tickets and any other object type: one generic model (issue 18). Pure: no I/O.

Object types are versions on the compacted `<prefix>.object-types` topic (key: the type name): a pipeline of
stages (the first is where a new object starts; `closed_stages` set `closed_at`), the type's property
definitions (schemas/properties.py validates them, per property) and optional stage effects (entering a stage
sets linked users' lifecycle stage). `deal`, `ticket` and `activity` exist without a record (DEFAULT_TYPES).

Every change to an object is an `ObjectCommand` on `<prefix>.object-commands`, keyed by "<type>:<id>", applied
by the projector (and again by `footfall replay`). The fold (`fold_command`, `join_states`) keeps, per part
of an object, the latest write by stamp (command time in ms, command id), and the latest delete: folding is a
join, so any order and any redelivery of the same commands give the same state (replay equals live).

- create/update: properties ($set: None or `unset` removes one), owner ("" clears it), due time (clear_due).
- create/move: the stage, and whether it is closed (the API reads that off the type when it sends the command).
- link/unlink: users (person ids) and companies, each link's latest write decides.
- delete at stamp D: the object and every part written until D are gone; a later write starts it afresh.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.profile_changes import ProfileChange, change_id_of
from schemas.properties import PropertyDefinition

TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
STAGE_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
OBJECT_ID_MAX = 256
ObjectCommandKind = Literal["create", "update", "move", "delete", "link", "unlink"]
LinkKind = Literal["user", "company"]


class ObjectTypeDefinition(BaseModel):
    """One object type: its stages in pipeline order, its property definitions, its stage effects."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=TYPE_PATTERN)
    label: str = Field("", max_length=200)
    stages: list[str] = Field(min_length=1, max_length=50)
    closed_stages: list[str] = Field(default_factory=list, max_length=50)
    properties: list[PropertyDefinition] = Field(default_factory=list, max_length=500)
    stage_effects: dict[str, str] = Field(default_factory=dict, description="stage → the lifecycle stage its linked users move to")
    built_in: bool = False
    version: int = Field(1, ge=1)
    deleted: bool = False
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _stages_fit(self) -> ObjectTypeDefinition:
        problems = [f"stage {s!r} is not 1-64 lower-case letters, digits, _ or -" for s in self.stages if not re.match(STAGE_PATTERN, s)]
        if len(set(self.stages)) != len(self.stages):
            problems.append("stages must be distinct")
        problems += [f"closed stage {s!r} is not one of the stages" for s in self.closed_stages if s not in self.stages]
        problems += [f"stage effect of {s!r}: not one of the stages" for s in self.stage_effects if s not in self.stages]
        names = [p.name for p in self.properties]
        if len(set(names)) != len(names):
            problems.append("property names must be distinct")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def initial_stage(self) -> str:
        return self.stages[0]

    def is_closed(self, stage: str) -> bool:
        return stage in self.closed_stages

    @property
    def definitions(self) -> dict[str, PropertyDefinition]:
        return {p.name: p for p in self.properties}


def _default(name: str, label: str, stages: list[str], closed: list[str]) -> ObjectTypeDefinition:
    return ObjectTypeDefinition(name=name, label=label, stages=stages, closed_stages=closed, built_in=True)


DEFAULT_TYPES: dict[str, ObjectTypeDefinition] = {
    t.name: t
    for t in (
        _default("deal", "Deals", ["open", "won", "lost"], ["won", "lost"]),
        _default("ticket", "Tickets", ["new", "open", "pending", "solved"], ["solved"]),
        _default("activity", "Activities", ["planned", "done"], ["done"]),
    )
}


def effective_types(records: Iterable[ObjectTypeDefinition]) -> dict[str, ObjectTypeDefinition]:
    """The types in force: the defaults, then each name's newest record (a deleted default falls back to itself)."""
    latest: dict[str, ObjectTypeDefinition] = {}
    for record in records:
        if record.name not in latest or record.version >= latest[record.name].version:
            latest[record.name] = record
    current = dict(DEFAULT_TYPES)
    for name, record in latest.items():
        if record.deleted:
            if name not in DEFAULT_TYPES:
                current.pop(name, None)
        else:
            current[name] = record
    return current


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: LinkKind
    id: str = Field(min_length=1, max_length=1024)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


def out_of_range(value: Any) -> bool:
    """Whether a JSON value holds an integer outside 64 bits (orjson, which writes every state, cannot)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return any(out_of_range(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(out_of_range(v) for v in value)
    return False


class ObjectCommand(BaseModel):
    """One change to one object (see the module's rules)."""

    model_config = ConfigDict(frozen=True)

    @field_validator("set")
    @classmethod
    def _writable(cls, values: dict[str, Any]) -> dict[str, Any]:
        if bad := [name for name, value in values.items() if out_of_range(value)]:
            raise ValueError(f"integers must fit in 64 bits: {', '.join(bad)}")
        return values

    kind: ObjectCommandKind
    command_id: str = Field(min_length=1)
    object_type: str = Field(pattern=TYPE_PATTERN)
    object_id: str = Field(min_length=1, max_length=OBJECT_ID_MAX)
    at: datetime
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    stage: str | None = None
    closed: bool = False  # the stage is one of the type's closed stages
    owner: str | None = None
    due_at: datetime | None = None
    clear_due: bool = False
    links: list[Link] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return object_key(self.object_type, self.object_id)


def object_key(object_type: str, object_id: str) -> str:
    """The commands' Kafka key, and the subject of their profile changes."""
    return f"{object_type}:{object_id}"


# -- the fold --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Write:
    """A value and the stamp that orders it: (time in ms, command id). REMOVED values are kept as None."""

    at: int
    by: str
    value: Any = field(default=None, compare=False)

    @property
    def stamp(self) -> tuple[int, str]:
        return (self.at, self.by)


def _later(a: Write | None, b: Write | None) -> Write | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.stamp > a.stamp else a


def _earlier(a: Write | None, b: Write | None) -> Write | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.stamp < a.stamp else a


def _per_key(a: Mapping[str, Write], b: Mapping[str, Write]) -> dict[str, Write]:
    return {k: w for k in sorted(set(a) | set(b)) if (w := _later(a.get(k), b.get(k))) is not None}


@dataclass(frozen=True)
class ObjectState:
    props: Mapping[str, Write] = field(default_factory=dict)  # value None: removed
    stage: Write | None = None  # value: [stage, closed]
    owner: Write | None = None
    due: Write | None = None  # value: ms or None
    links: Mapping[str, Write] = field(default_factory=dict)  # "user:<id>" / "company:<id>" → linked (bool)
    first: Write | None = None
    latest: Write | None = None
    deleted: Write | None = None

    def to_json(self) -> str:
        def one(w: Write | None) -> list[Any] | None:
            return None if w is None else [w.at, w.by, w.value]

        state = {
            "props": {k: one(w) for k, w in self.props.items()},
            "links": {k: one(w) for k, w in self.links.items()},
            **{name: one(getattr(self, name)) for name in ("stage", "owner", "due", "first", "latest", "deleted")},
        }
        return orjson.dumps({k: v for k, v in state.items() if v}, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str) -> ObjectState:
        state = orjson.loads(text or "{}")

        def one(stored: list[Any] | None) -> Write | None:
            return Write(*stored) if stored else None

        return cls(
            props={k: Write(*v) for k, v in state.get("props", {}).items()},
            links={k: Write(*v) for k, v in state.get("links", {}).items()},
            **{name: one(state.get(name)) for name in ("stage", "owner", "due", "first", "latest", "deleted")},
        )


EMPTY_OBJECT = ObjectState()


def join_states(a: ObjectState, b: ObjectState) -> ObjectState:
    """The state that holds both: a join (commutative, associative, idempotent)."""
    return ObjectState(
        props=_per_key(a.props, b.props),
        stage=_later(a.stage, b.stage),
        owner=_later(a.owner, b.owner),
        due=_later(a.due, b.due),
        links=_per_key(a.links, b.links),
        first=_earlier(a.first, b.first),
        latest=_later(a.latest, b.latest),
        deleted=_later(a.deleted, b.deleted),
    )


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def state_of_command(command: ObjectCommand) -> ObjectState:
    """What one command writes, as a state of its own."""
    at, by = epoch_ms(command.at), command.command_id
    stamp = Write(at, by)
    if command.kind == "delete":
        return ObjectState(deleted=stamp)
    if command.kind in ("link", "unlink"):
        linked = command.kind == "link"
        return ObjectState(links={link.key: Write(at, by, linked) for link in command.links}, latest=stamp, first=stamp)
    props = {k: Write(at, by, v) for k, v in command.set.items()}
    props.update((k, Write(at, by, None)) for k in command.unset)
    due = Write(at, by, None) if command.clear_due else Write(at, by, epoch_ms(command.due_at)) if command.due_at else None
    return ObjectState(
        props=props,
        stage=Write(at, by, [command.stage, command.closed]) if command.stage else None,
        owner=None if command.owner is None else Write(at, by, command.owner),
        due=due,
        links={link.key: Write(at, by, True) for link in command.links} if command.kind == "create" else {},
        first=stamp,
        latest=stamp,
    )


def fold_command(state: ObjectState, command: ObjectCommand) -> ObjectState:
    return join_states(state, state_of_command(command))


def without_links(state: ObjectState, keys: Iterable[str]) -> ObjectState:
    """The state with some links forgotten altogether (a deleted or erased user's)."""
    drop = set(keys)
    return replace(state, links={k: w for k, w in state.links.items() if k not in drop})


def with_person_moved(state: ObjectState, from_person: str, into_person: str) -> ObjectState:
    """A person merged into another: their link (its latest write) becomes the survivor's."""
    absorbed = state.links.get(f"user:{from_person}")
    if absorbed is None:
        return state
    links = {k: w for k, w in state.links.items() if k != f"user:{from_person}"}
    survivor = f"user:{into_person}"
    current = links.get(survivor)
    links[survivor] = absorbed if current is None or absorbed.stamp > current.stamp else current
    return replace(state, links=links)


# -- what a state shows ------------------------------------------------------------------------------------


def _surviving(write: Write | None, deleted: Write | None) -> Write | None:
    """The write, if it came after the latest delete."""
    return write if write is not None and (deleted is None or write.stamp > deleted.stamp) else None


def _survives(write: Write | None, deleted: Write | None) -> bool:
    return _surviving(write, deleted) is not None


def object_exists(state: ObjectState) -> bool:
    return _survives(state.latest, state.deleted)


def object_properties(state: ObjectState) -> dict[str, Any]:
    return {k: w.value for k, w in state.props.items() if w.value is not None and _survives(w, state.deleted)}


def object_stage(state: ObjectState) -> tuple[str, int | None]:
    """The stage ('' before one was set) and when the object closed (ms; None while open)."""
    write = _surviving(state.stage, state.deleted)
    if write is None:
        return "", None
    stage, closed = write.value
    return stage, write.at if closed else None


def object_owner(state: ObjectState) -> str:
    write = _surviving(state.owner, state.deleted)
    return write.value if write is not None else ""


def object_due(state: ObjectState) -> int | None:
    write = _surviving(state.due, state.deleted)
    return write.value if write is not None else None


def active_links(state: ObjectState) -> dict[str, int]:
    """Links in force ("user:<id>" → since, ms); none once the object is deleted."""
    if not object_exists(state):
        return {}
    return {k: w.at for k, w in state.links.items() if w.value and _survives(w, state.deleted)}


def linked_persons(state: ObjectState) -> set[str]:
    return {k.removeprefix("user:") for k in active_links(state) if k.startswith("user:")}


# -- the timeline ------------------------------------------------------------------------------------------


_CHANGE_KIND = {
    "create": "object_created",
    "update": "object_updated",
    "link": "object_updated",
    "unlink": "object_updated",
    "move": "object_stage_changed",
    "delete": "object_deleted",
}


def profile_changes_of(command: ObjectCommand, before: ObjectState, after: ObjectState) -> list[ProfileChange]:
    """The outbound changes one command makes: one per person linked before or after it (an unlinked person
    sees the object updated once more), with ids from the command id and the person id."""
    if not object_exists(before) and not object_exists(after):
        return []
    persons = linked_persons(before) | linked_persons(after)
    if command.kind == "unlink":
        persons |= {link.id for link in command.links if link.kind == "user"}
    stage_before, stage_after = object_stage(before)[0], object_stage(after)[0]
    kind = _CHANGE_KIND[command.kind]
    if kind == "object_stage_changed" and not stage_before:
        kind = "object_created"  # a move that arrived before its create
    detail: dict[str, Any] = {"type": command.object_type, "id": command.object_id, "stage": stage_after or stage_before}
    if command.kind in ("link", "unlink"):
        detail[command.kind] = [link.key for link in command.links]
    subject = command.key
    return [
        ProfileChange(
            change_id=change_id_of(command.command_id, person),
            person_id=person,
            kind=kind,
            at=command.at,
            source=f"object:{subject}",
            subject=subject,
            before=stage_before if kind == "object_stage_changed" else None,
            after=stage_after if kind == "object_stage_changed" else None,
            detail=detail,
        )
        for person in sorted(persons)
    ]
