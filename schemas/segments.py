"""Real-time segments: their definitions, the compiler from the condition language (schemas/conditions.py) to
parameterised ClickHouse SQL, a pure reference evaluator with the same semantics, and the membership
transitions an evaluation implies. Pure: no I/O.

Definitions live on the compacted `segments` topic (key: the segment id), followed whole by every API process
and by the evaluator. The evaluator (projections/segment_evaluator.py) runs `compile_segment` against
ClickHouse, diffs the members with what it published before (`MemberState`, folded from the
`profile-changes` topic itself) and publishes each transition as a `ProfileChange` whose id derives from
(segment, person, entry number): the same transition always has the same id.

SQL is built from fixed fragments; every value a definition carries (property names, texts, numbers, event
names, ids) travels as a server-side parameter (`{p0:String}`), never spliced into the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.conditions import (
    DATE_OPERATORS,
    EQUALITY_OPERATORS,
    LIST_OPERATORS,
    NUMBER_OPERATORS,
    PRESENCE_OPERATORS,
    TEXT_OPERATORS,
    ConditionGroup,
    EventCondition,
    IdentityCondition,
    LastSeenCondition,
    ListCondition,
    PropertyCondition,
    SegmentCondition,
    SessionCountCondition,
    StageCondition,
    StatusCondition,
    TagCondition,
    instant,
    number,
    property_matches,
    walk,
)
from schemas.profile_changes import ProfileChange, change_id_of

SEGMENT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
DAY_MS = 86_400_000
# Kinds decided from the persons row alone: a segment made only of these is re-evaluated promptly after profiles
# change; any other kind (behaviour, time windows) waits for the schedule.
PROPERTY_KINDS = frozenset({"group", "property", "tag", "list", "stage", "status", "identity", "session_count", "segment"})


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=SEGMENT_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    condition: ConditionGroup
    version: int = 1
    deleted: bool = False
    created_at: datetime
    updated_at: datetime


class SegmentStatus(BaseModel):
    """The evaluator's last word on a segment (compacted `segment-status` topic, key: the segment id)."""

    model_config = ConfigDict(frozen=True)

    segment_id: str
    version: int  # the definition version evaluated
    evaluated_at: datetime | None = None
    duration_ms: float | None = None
    members: int | None = None
    entered: int = 0
    exited: int = 0
    error: str | None = None
    error_at: datetime | None = None


def live_segments(records: Iterable[SegmentDefinition]) -> dict[str, SegmentDefinition]:
    latest: dict[str, SegmentDefinition] = {}
    for record in records:
        if record.id not in latest or record.version >= latest[record.id].version:
            latest[record.id] = record
    return {segment_id: record for segment_id, record in latest.items() if not record.deleted}


def segments_referenced(condition: BaseModel) -> set[str]:
    return {c.segment_id for c in walk(condition) if isinstance(c, SegmentCondition)}


def reference_problem(segment_id: str, condition: BaseModel, segments: Mapping[str, SegmentDefinition]) -> str | None:
    """Why `condition` cannot be the condition of `segment_id`: it names a segment that does not exist, or
    membership refers back to the segment itself (a cycle)."""
    seen: set[str] = set()
    pending = [(segment_id, s) for s in segments_referenced(condition)]
    while pending:
        via, target = pending.pop()
        if target == segment_id:
            return f"segment {via!r} refers back to {segment_id!r}: membership cannot be circular"
        if target not in segments:
            return f"no segment {target!r}"
        if target in seen:
            continue
        seen.add(target)
        pending += [(target, s) for s in segments_referenced(segments[target].condition)]
    return None


def inline_segments(condition: Any, segments: Mapping[str, SegmentDefinition], depth: int = 0) -> Any:
    """The condition with each segment-membership condition replaced by that segment's own condition, so a
    segment built on another is decided from the same data in the same query (never from the other's last,
    possibly older, evaluation). A deleted or unknown segment has no members."""
    if depth > 20:
        raise ValueError("segments refer to each other too deeply (or in a cycle)")
    if isinstance(condition, ConditionGroup):
        return ConditionGroup.model_construct(
            kind="group", match=condition.match, conditions=[inline_segments(c, segments, depth) for c in condition.conditions]
        )
    if isinstance(condition, SegmentCondition):
        target = segments.get(condition.segment_id)
        inner: Any = (
            inline_segments(target.condition, segments, depth + 1)
            if target
            else ConditionGroup.model_construct(kind="group", match="any", conditions=[])
        )
        if condition.operator == "in":
            return inner
        return NotCondition(inner)
    return condition


@dataclass(frozen=True)
class NotCondition:
    """Internal only (never in a definition): the negation `not_in` a segment compiles to."""

    inner: Any
    kind: str = "not"


def kinds_of(condition: BaseModel, segments: Mapping[str, SegmentDefinition]) -> set[str]:
    """Every condition kind the segment depends on, through the segments it refers to."""
    kinds = {str(getattr(c, "kind", "")) for c in walk(condition)}
    for segment_id in segments_referenced(condition):
        if segment_id in segments:
            kinds |= kinds_of(segments[segment_id].condition, {k: v for k, v in segments.items() if k != segment_id})
    return kinds


def is_property_only(condition: BaseModel, segments: Mapping[str, SegmentDefinition]) -> bool:
    return kinds_of(condition, segments) <= PROPERTY_KINDS


# -- properties: which ones are persons columns, and their types ---------------------------------------------

PropertyType = Literal["text", "number", "boolean", "datetime", "any"]
# Default and derived properties, read from the persons row's columns; every other name is a custom property
# (a key of the `properties` JSON).
COLUMN_PROPERTIES: dict[str, tuple[str, PropertyType]] = {
    "email": ("email", "text"),
    "name": ("name", "text"),
    "phone": ("phone", "text"),
    "$email_domain": ("email_domain", "text"),
    "$is_free_email": ("is_free_email", "boolean"),
    "$company_domain": ("company_domain", "text"),
    "$visitor_number": ("visitor_number", "number"),
    "$first_seen": ("first_seen", "datetime"),
    "$last_seen": ("last_seen", "datetime"),
    "$is_identified": ("is_identified", "boolean"),
    "$is_contact": ("is_contact", "boolean"),
    "$session_count": ("session_count", "number"),
    "$event_count": ("event_count", "number"),
    "$initial_referring_domain": ("initial_referring_domain", "text"),
    "$initial_utm_source": ("initial_utm_source", "text"),
    "$initial_utm_medium": ("initial_utm_medium", "text"),
    "$initial_utm_campaign": ("initial_utm_campaign", "text"),
    "$last_browser": ("last_browser", "text"),
    "$last_os": ("last_os", "text"),
    "$last_device_type": ("last_device_type", "text"),
}
OPERATORS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "text": (*EQUALITY_OPERATORS, *LIST_OPERATORS, *TEXT_OPERATORS, *PRESENCE_OPERATORS),
    "number": (*EQUALITY_OPERATORS, *LIST_OPERATORS, *NUMBER_OPERATORS, *PRESENCE_OPERATORS),
    "boolean": (*EQUALITY_OPERATORS, *PRESENCE_OPERATORS),
    "datetime": (*DATE_OPERATORS, *PRESENCE_OPERATORS),
    "any": (*EQUALITY_OPERATORS, *LIST_OPERATORS, *TEXT_OPERATORS, *NUMBER_OPERATORS, *DATE_OPERATORS, *PRESENCE_OPERATORS),
}
# Custom property definition types (schemas/properties.py) → the operators that make sense for them.
DEFINITION_TYPES: dict[str, PropertyType] = {
    "string": "text", "email": "text", "phone": "text", "url": "text", "enum": "text",
    "number": "number", "integer": "number", "boolean": "boolean", "datetime": "datetime",
}  # fmt: skip


def property_type(name: str, custom_types: Mapping[str, str] | None = None) -> PropertyType:
    if name in COLUMN_PROPERTIES:
        return COLUMN_PROPERTIES[name][1]
    return DEFINITION_TYPES.get((custom_types or {}).get(name, ""), "any")


def operator_problems(condition: BaseModel, custom_types: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(path, message) for every property condition whose operator does not fit its property's type."""
    problems = []

    def visit(node: BaseModel, path: str) -> None:
        if isinstance(node, ConditionGroup):
            for index, child in enumerate(node.conditions):
                visit(child, f"{path}.conditions.{index}")
        elif isinstance(node, PropertyCondition):
            kind = property_type(node.property, custom_types)
            if node.operator not in OPERATORS_BY_TYPE[kind]:
                problems.append(
                    (f"{path}.operator", f"{node.property!r} is a {kind} property: use one of {', '.join(OPERATORS_BY_TYPE[kind])}")
                )
        elif isinstance(node, EventCondition) and node.where is not None:
            visit(node.where, f"{path}.where")

    visit(condition, "condition")
    return problems


# -- the compiler ------------------------------------------------------------------------------------------


class CompiledSegment(NamedTuple):
    """`where` is a boolean expression over `{db}.persons` (FINAL) columns; `parameters` its values."""

    where: str
    parameters: dict[str, Any]

    def members_sql(self, columns: str = "person_id") -> str:
        return f"SELECT {columns} FROM {{db}}.persons FINAL WHERE {self.where}"


@dataclass
class _Sql:
    """The expressions one property reads as: present (UInt8), its text, number and instant (Nullable), and
    whether it is a boolean or a text (what `equals true` accepts)."""

    present: str
    text: str
    number: str
    instant: str
    bool_or_text: str
    # A test that is false only when the property is surely absent, and far cheaper than parsing JSON. A
    # condition that is false for an absent property puts it first, so ClickHouse parses only the rows it passes.
    maybe_present: str = "1"


@dataclass
class SegmentCompiler:
    now_ms: int  # the evaluation's "now", a parameter: every window is relative to it
    parameters: dict[str, Any] = field(default_factory=dict)

    def param(self, value: Any, type_name: str) -> str:
        name = f"p{len(self.parameters)}"
        self.parameters[name] = value
        return f"{{{name}:{type_name}}}"

    def compile(self, condition: Any) -> str:
        if isinstance(condition, ConditionGroup):
            if not condition.conditions:
                return "1" if condition.match == "all" else "0"
            joiner = " AND " if condition.match == "all" else " OR "
            return "(" + joiner.join(self.compile(c) for c in condition.conditions) + ")"
        if isinstance(condition, NotCondition):
            return f"(NOT {self.compile(condition.inner)})"
        if isinstance(condition, PropertyCondition):
            return self.property(condition, self.person_property(condition.property))
        if isinstance(condition, TagCondition):
            test = f"has(tags, {self.param(condition.tag, 'String')})"
            return test if condition.operator == "has" else f"(NOT {test})"
        if isinstance(condition, ListCondition):
            test = f"has(lists, {self.param(condition.list_id, 'String')})"
            return test if condition.operator == "in" else f"(NOT {test})"
        if isinstance(condition, StageCondition):
            test = f"has({self.param(list(condition.stages), 'Array(String)')}, stage)"
            return test if condition.operator == "in" else f"(NOT {test})"
        if isinstance(condition, StatusCondition):
            return f"(status = {self.param(condition.status, 'String')})"
        if isinstance(condition, IdentityCondition):
            return {
                "identified": "is_identified",
                "anonymous": "(NOT is_identified)",
                "contact": "is_contact",
                "not_contact": "(NOT is_contact)",
            }[condition.identity]
        if isinstance(condition, SessionCountCondition):
            op = {"equals": "=", "not_equals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[condition.operator]
            return f"(session_count {op} {self.param(condition.value, 'UInt64')})"
        if isinstance(condition, LastSeenCondition):
            test = f"(toUnixTimestamp64Milli(last_seen) > {self.param(self.now_ms - condition.days * DAY_MS, 'Int64')})"
            return test if condition.operator == "within" else f"(NOT {test})"
        if isinstance(condition, EventCondition):
            return self.event(condition)
        if isinstance(condition, SegmentCondition):
            raise ValueError("inline segment conditions (inline_segments) before compiling")
        raise ValueError(f"cannot compile a {type(condition).__name__}")

    def event(self, condition: EventCondition) -> str:
        """Behaviour: the persons with enough (or few enough) of the event in (now - days, now]."""
        since = self.param(self.now_ms - condition.days * DAY_MS, "Int64")
        until = self.param(self.now_ms, "Int64")
        where = (
            f"event = {self.param(condition.event, 'String')} AND toUnixTimestamp64Milli(timestamp) > {since} "
            f"AND toUnixTimestamp64Milli(timestamp) <= {until}"
        )
        if condition.where is not None:
            where += " AND " + self.property(condition.where, self.json_property("properties", condition.where.property))
        if condition.operator == "at_least":
            having = f"count() >= {self.param(condition.count, 'UInt64')}"
            return (
                f"(person_id IN (SELECT live_person_id FROM {{db}}.events_resolved WHERE {where} GROUP BY live_person_id HAVING {having}))"
            )
        having = f"count() > {self.param(condition.count, 'UInt64')}"
        return (
            f"(person_id NOT IN (SELECT live_person_id FROM {{db}}.events_resolved WHERE {where} GROUP BY live_person_id HAVING {having}))"
        )

    def person_property(self, name: str) -> _Sql:
        if name not in COLUMN_PROPERTIES:
            # persons.properties is always orjson's text (projections/profiles.py), so a key it holds appears there
            # exactly as orjson writes the name.
            key_text = self.param(orjson.dumps(name).decode(), "String")
            return replace(self.json_property("properties", name), maybe_present=f"(position(properties, {key_text}) > 0)")
        column, kind = COLUMN_PROPERTIES[name]
        if kind == "text":
            text = f"nullIf({column}, '')"  # an empty text column is a property never set
            return _Sql(f"({column} != '')", text, _text_number(text), _text_instant(text), "1")
        if kind == "number":
            return _Sql("1", f"toString({column})", f"toFloat64({column})", f"toFloat64({column})", "0")
        if kind == "boolean":
            return _Sql("1", f"if({column}, 'true', 'false')", "CAST(NULL, 'Nullable(Float64)')", "CAST(NULL, 'Nullable(Float64)')", "1")
        millis = f"toFloat64(toUnixTimestamp64Milli({column}))"  # datetime: epoch ms; the epoch itself means never
        return _Sql(
            f"({millis} > 0)",
            f"if({millis} > 0, toString(toUnixTimestamp64Milli({column})), NULL)",
            f"if({millis} > 0, {millis}, NULL)",
            f"if({millis} > 0, {millis}, NULL)",
            "0",
        )

    def json_property(self, column: str, name: str) -> _Sql:
        key = self.param(name, "String")
        kind = f"JSONType({column}, {key})"
        raw_float = f"JSONExtractFloat({column}, {key})"
        string = f"JSONExtractString({column}, {key})"
        text = (
            f"multiIf({kind} = 'String', {string}, {kind} = 'Bool', if(JSONExtractBool({column}, {key}), 'true', 'false'), "
            f"{kind} IN ('Int64', 'UInt64'), JSONExtractRaw({column}, {key}), "
            f"{kind} = 'Double', if(isFinite({raw_float}) AND {raw_float} = floor({raw_float}) AND abs({raw_float}) < 1e18, "
            f"toString(toInt64({raw_float})), toString({raw_float})), NULL)"
        )
        number = f"multiIf({kind} IN ('Int64', 'UInt64', 'Double'), {raw_float}, {kind} = 'String', {_text_number(string)}, NULL)"
        moment = f"multiIf({kind} IN ('Int64', 'UInt64', 'Double'), {raw_float}, {kind} = 'String', {_text_instant(string)}, NULL)"
        return _Sql(f"({kind} != 'Null')", text, number, moment, f"({kind} IN ('Bool', 'String'))")

    def property(self, condition: PropertyCondition, sql: _Sql) -> str:
        if condition.operator == "is_not_set":
            return f"(NOT {sql.maybe_present} OR NOT {sql.present})"
        test = self.property_test(condition, sql)
        return test if sql.maybe_present == "1" else f"({sql.maybe_present} AND {test})"  # every other test is false when absent

    def property_test(self, condition: PropertyCondition, sql: _Sql) -> str:
        op, value = condition.operator, condition.value
        if op in PRESENCE_OPERATORS:
            return sql.present if op == "is_set" else f"(NOT {sql.present})"
        if op in LIST_OPERATORS or op in EQUALITY_OPERATORS:
            members = value if isinstance(value, list) else [value]
            hit = "(" + " OR ".join(self.equals(sql, member) for member in members) + ")"
            return hit if op in ("equals", "in") else f"({sql.present} AND NOT {hit})"
        if op in TEXT_OPERATORS:
            folded = f"lowerUTF8({sql.text})"
            wanted = f"lowerUTF8({self.param(str(value), 'String')})"
            test = {
                "contains": f"position({folded}, {wanted}) > 0",
                "not_contains": f"position({folded}, {wanted}) = 0",
                "starts_with": f"startsWith({folded}, {wanted})",
                "ends_with": f"endsWith({folded}, {wanted})",
            }[op]
            return f"ifNull({test}, 0)"
        compare = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "before": "<", "after": ">"}[op]
        bound = number(value) if op in NUMBER_OPERATORS else instant(value)  # the model's validator made it fit
        if bound is None:
            return "0"
        read = sql.number if op in NUMBER_OPERATORS else sql.instant
        return f"ifNull({read} {compare} {self.param(bound, 'Float64')}, 0)"

    def equals(self, sql: _Sql, expected: Any) -> str:
        if isinstance(expected, bool):
            return f"ifNull({sql.bool_or_text} AND lowerUTF8(trimBoth({sql.text})) = {self.param('true' if expected else 'false', 'String')}, 0)"
        if isinstance(expected, int | float):
            return f"ifNull({sql.number} = {self.param(float(expected), 'Float64')}, 0)"
        return f"ifNull(lowerUTF8({sql.text}) = lowerUTF8({self.param(expected, 'String')}), 0)"


def _text_number(text_sql: str) -> str:
    parsed = f"toFloat64OrNull(trimBoth({text_sql}))"
    return f"if(isFinite(ifNull({parsed}, nan)), {parsed}, NULL)"


def _text_instant(text_sql: str) -> str:
    """ISO 8601 text (a date first: best-effort parsing alone would read "01" as a date)."""
    return (
        f"if(match({text_sql}, '^\\\\s*[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'), "
        f"toFloat64(toUnixTimestamp64Milli(parseDateTime64BestEffortOrNull(trimBoth({text_sql}), 3, 'UTC'))), NULL)"
    )


def compile_segment(condition: BaseModel, segments: Mapping[str, SegmentDefinition], now: datetime) -> CompiledSegment:
    """The segment's condition as a WHERE over `{db}.persons FINAL` (segments it refers to inlined)."""
    compiler = SegmentCompiler(now_ms=int(now.timestamp() * 1000))
    where = compiler.compile(inline_segments(condition, segments))
    return CompiledSegment(where, compiler.parameters)


# -- the reference evaluator: the same semantics over one person's facts, in memory -------------------------


@dataclass
class PersonFacts:
    """What a segment can test about a person: the persons row's columns, its custom properties, and its events
    as (event name, epoch ms, properties)."""

    person_id: str
    columns: dict[str, Any]
    properties: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)

    def value(self, name: str) -> Any:
        if name not in COLUMN_PROPERTIES:
            return self.properties.get(name)
        column, kind = COLUMN_PROPERTIES[name]
        found = self.columns.get(column)
        if kind == "text":
            return found or None
        if kind == "datetime":
            return found if found else None  # epoch ms; 0: never
        return found


def evaluate_segment(condition: Any, person: PersonFacts, segments: Mapping[str, SegmentDefinition], now_ms: int) -> bool:
    """Whether the person meets the condition at `now_ms` (property-tested against the compiled SQL)."""
    if isinstance(condition, SegmentCondition | ConditionGroup):
        condition = inline_segments(condition, segments)
    return _decide(condition, person, now_ms)


def _decide(condition: Any, person: PersonFacts, now_ms: int) -> bool:
    c = person.columns
    if isinstance(condition, ConditionGroup):
        results = (_decide(child, person, now_ms) for child in condition.conditions)
        return all(results) if condition.match == "all" else any(results)
    if isinstance(condition, NotCondition):
        return not _decide(condition.inner, person, now_ms)
    if isinstance(condition, PropertyCondition):
        return property_matches(condition, person.value(condition.property))
    if isinstance(condition, TagCondition):
        return (condition.tag in c.get("tags", [])) == (condition.operator == "has")
    if isinstance(condition, ListCondition):
        return (condition.list_id in c.get("lists", [])) == (condition.operator == "in")
    if isinstance(condition, StageCondition):
        return (c.get("stage", "") in condition.stages) == (condition.operator == "in")
    if isinstance(condition, StatusCondition):
        return c.get("status") == condition.status
    if isinstance(condition, IdentityCondition):
        field_name, wanted = {"identified": ("is_identified", True), "anonymous": ("is_identified", False),
                              "contact": ("is_contact", True), "not_contact": ("is_contact", False)}[condition.identity]  # fmt: skip
        return bool(c.get(field_name)) == wanted
    if isinstance(condition, SessionCountCondition):
        ops = {"equals": int.__eq__, "not_equals": int.__ne__, "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        return ops[condition.operator](int(c.get("session_count", 0)), condition.value)
    if isinstance(condition, LastSeenCondition):
        within = int(c.get("last_seen", 0)) > now_ms - condition.days * DAY_MS
        return within == (condition.operator == "within")
    if isinstance(condition, EventCondition):
        since = now_ms - condition.days * DAY_MS
        count = sum(
            1
            for name, at, properties in person.events
            if name == condition.event
            and since < at <= now_ms
            and (condition.where is None or property_matches(condition.where, properties.get(condition.where.property)))
        )
        return count >= condition.count if condition.operator == "at_least" else count <= condition.count
    raise ValueError(f"cannot evaluate a {type(condition).__name__}")


# -- membership transitions --------------------------------------------------------------------------------


class MemberState(NamedTuple):
    """A person's standing in one segment, as the published changes say: how many times it entered, whether it
    is in now, and when the current (or last) entry began."""

    entries: int
    inside: bool
    entered_at: datetime | None


def apply_change(state: dict[tuple[str, str], MemberState], change: ProfileChange) -> None:
    """Fold one published segment change into the state (the evaluator's start-up read, and each publish)."""
    if change.kind not in ("segment_entered", "segment_exited") or change.subject is None:
        return
    key = (change.subject, change.person_id)
    entry = int(change.detail.get("entry", 1))
    current = state.get(key, MemberState(0, False, None))
    if entry < current.entries or (entry == current.entries and not current.inside and change.kind == "segment_entered"):
        return  # older than what is known (a replayed copy)
    if change.kind == "segment_entered":
        state[key] = MemberState(entry, True, change.at)
    else:
        state[key] = MemberState(entry, False, current.entered_at if entry == current.entries else None)


def segment_change_id(segment_id: str, person_id: str, entry: int, kind: str) -> str:
    return change_id_of("segment", segment_id, person_id, entry, kind)


def transitions(
    segment_id: str, members_now: set[str], state: Mapping[tuple[str, str], MemberState], inside_now: set[str], at: datetime
) -> list[ProfileChange]:
    """The enter and exit changes that take the published membership (`inside_now`, with `state`) to `members_now`.
    Each id derives from (segment, person, entry number, kind): deciding the same transition again (after a
    crash before it was published) gives the same id."""
    changes = []
    source = f"segment:{segment_id}"
    for person_id in sorted(members_now - inside_now):
        entry = state.get((segment_id, person_id), MemberState(0, False, None)).entries + 1
        changes.append(
            ProfileChange(
                change_id=segment_change_id(segment_id, person_id, entry, "entered"),
                person_id=person_id,
                kind="segment_entered",
                at=at,
                source=source,
                subject=segment_id,
                detail={"entry": entry},
            )
        )
    for person_id in sorted(inside_now - members_now):
        known = state[(segment_id, person_id)]
        changes.append(
            ProfileChange(
                change_id=segment_change_id(segment_id, person_id, known.entries, "exited"),
                person_id=person_id,
                kind="segment_exited",
                at=at,
                source=source,
                subject=segment_id,
                detail={"entry": known.entries, "entered_at": known.entered_at.isoformat() if known.entered_at else None},
            )
        )
    return changes


class Membership:
    """The evaluator's state (`standings`, as apply_change folds it) with two indexes kept beside it: who is in
    each segment now, and every segment the standings know. `members_of` and `known_segments` give the same by
    scanning every standing, which the evaluator did once per segment and batch: about 0.4 s a scan at a million."""

    def __init__(self) -> None:
        self.standings: dict[tuple[str, str], MemberState] = {}
        self.inside: dict[str, set[str]] = {}  # segment id -> the persons in it now (no empty sets)
        self.segments: set[str] = set()  # every segment any standing is of, deleted and emptied ones included

    def apply(self, change: ProfileChange) -> None:
        apply_change(self.standings, change)
        if change.kind not in ("segment_entered", "segment_exited") or change.subject is None:
            return
        segment_id, person_id = change.subject, change.person_id
        standing = self.standings.get((segment_id, person_id))
        if standing is None:
            return
        self.segments.add(segment_id)
        if standing.inside:
            self.inside.setdefault(segment_id, set()).add(person_id)
        elif (members := self.inside.get(segment_id)) is not None:
            members.discard(person_id)
            if not members:
                del self.inside[segment_id]

    def members(self, segment_id: str) -> set[str]:
        """A copy: the caller may publish changes (and so change the index) while it still holds this."""
        return set(self.inside.get(segment_id, ()))


def members_of(state: Mapping[tuple[str, str], MemberState]) -> dict[str, set[str]]:
    """Segment id → the persons in it now, by the published changes."""
    found: dict[str, set[str]] = {}
    for (segment_id, person_id), standing in state.items():
        if standing.inside:
            found.setdefault(segment_id, set()).add(person_id)
    return found
