"""The segment condition language: AND/OR groups, nestable, over typed conditions (docs/conditions.md).

A condition is JSON, shared by every feature that selects users: configs' targeting rules (issue 19) and
segments, lists and stage rules (issue 17). Each condition kind has a `kind` discriminator; this module
holds the kinds and a pure evaluator for the kinds that can be decided from one person's facts in memory:
`property` and `group` from the properties alone (`IN_MEMORY_KINDS`), and `tag`, `list`, `stage`, `status`,
`identity` and `segment` from the person's facts carried beside them as `$tags`, `$lists`, `$stage`,
`$status`, `$is_identified`, `$is_contact` and `$segments` (`TARGETING_KINDS`: what configs target; the
collector gets the facts from the person-properties and person-segments topics). Kinds decided in ClickHouse
(behaviour, session count, last seen) compile to SQL only; `evaluate` refuses them with `NotEvaluableHere`,
and a feature that evaluates in memory validates up front that its conditions only use the kinds it has
the facts for.

Semantics, the same in memory and in SQL:
- a missing or null property makes every operator false except `is_not_set` (so `not_equals x` means
  "is set and is not x");
- string comparisons are case-insensitive; a property is compared as text by the text operators;
- number operators compare numbers; a property that is a numeric string counts as that number, booleans
  and other values never match;
- date operators compare instants: ISO 8601 text (no zone means UTC) or epoch milliseconds;
- `in`/`not_in` take a list and apply `equals` to each member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

MAX_DEPTH = 6
MAX_CONDITIONS = 200

TEXT_OPERATORS = ("contains", "not_contains", "starts_with", "ends_with")
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte")
DATE_OPERATORS = ("before", "after")
EQUALITY_OPERATORS = ("equals", "not_equals")
LIST_OPERATORS = ("in", "not_in")
PRESENCE_OPERATORS = ("is_set", "is_not_set")
Operator = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with",
    "gt", "gte", "lt", "lte", "before", "after", "is_set", "is_not_set",
]  # fmt: skip
Scalar = str | int | float | bool


class NotEvaluableHere(ValueError):
    """A condition kind that needs ClickHouse (behaviour, segment membership) asked of the in-memory evaluator."""


class PropertyCondition(BaseModel):
    """A person property compared with a value. `property` names a top-level key of the profile's properties."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["property"] = "property"
    property: str = Field(min_length=1, max_length=200)
    operator: Operator
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> PropertyCondition:
        op, value = self.operator, self.value
        if op in PRESENCE_OPERATORS:
            if value is not None:
                raise ValueError(f"'{op}' takes no value")
        elif op in LIST_OPERATORS:
            if not isinstance(value, list) or not value:
                raise ValueError(f"'{op}' takes a non-empty list of values")
        elif isinstance(value, list) or value is None:
            raise ValueError(f"'{op}' takes one value, not {'a list' if value is not None else 'none'}")
        elif op in TEXT_OPERATORS and not isinstance(value, str):
            raise ValueError(f"'{op}' compares text: the value must be a string")
        elif op in NUMBER_OPERATORS and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
            raise ValueError(f"'{op}' compares numbers: the value must be a finite number")
        elif op in DATE_OPERATORS and instant(value) is None:
            raise ValueError(f"'{op}' compares dates: the value must be an ISO 8601 date-time or epoch milliseconds")
        return self


class ConditionGroup(BaseModel):
    """All (AND) or any (OR) of its conditions; an empty `all` matches everyone, an empty `any` no one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["group"] = "group"
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounded(self) -> ConditionGroup:
        depth, count = _shape(self)
        if depth > MAX_DEPTH:
            raise ValueError(f"groups nest at most {MAX_DEPTH} deep")
        if count > MAX_CONDITIONS:
            raise ValueError(f"at most {MAX_CONDITIONS} conditions in all")
        return self


class TagCondition(BaseModel):
    """The person has (or has not) a tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["tag"] = "tag"
    operator: Literal["has", "has_not"] = "has"
    tag: str = Field(min_length=1, max_length=200)


class ListCondition(BaseModel):
    """The person is (or is not) a member of a static list now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["list"] = "list"
    operator: Literal["in", "not_in"] = "in"
    list_id: str = Field(min_length=1, max_length=64)


class StageCondition(BaseModel):
    """The person's lifecycle stage is (not) one of these ("" : no stage)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["stage"] = "stage"
    operator: Literal["in", "not_in"] = "in"
    stages: list[str] = Field(min_length=1, max_length=100)


class StatusCondition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["status"] = "status"
    status: Literal["active", "disabled"]


class IdentityCondition(BaseModel):
    """identified: has a user id; anonymous: has none; contact / not_contact: is (not) a contact (identified, or gave an
    email or phone: the persons row's is_contact)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["identity"] = "identity"
    identity: Literal["identified", "anonymous", "contact", "not_contact"]


class EventCondition(BaseModel):
    """Behaviour: performed `event` at least / at most `count` times in the last `days` days, counting only the
    events whose properties meet `where` when given. `at_most 0` means "never did it in that window"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["event"] = "event"
    event: str = Field(min_length=1, max_length=200)
    operator: Literal["at_least", "at_most"] = "at_least"
    count: int = Field(1, ge=0, le=1_000_000)
    days: int = Field(30, ge=1, le=3650)
    where: PropertyCondition | None = Field(None, description="a condition on the event's properties")

    @model_validator(mode="after")
    def _meaningful(self) -> EventCondition:
        if self.operator == "at_least" and self.count == 0:
            raise ValueError("'at_least 0' matches everyone: use a count of 1 or more")
        return self


class SessionCountCondition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["session_count"] = "session_count"
    operator: Literal["equals", "not_equals", "gt", "gte", "lt", "lte"]
    value: int = Field(ge=0, le=2**31)


class LastSeenCondition(BaseModel):
    """Last seen within the last `days` days (or not within them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["last_seen"] = "last_seen"
    operator: Literal["within", "not_within"] = "within"
    days: int = Field(ge=1, le=3650)


class SegmentCondition(BaseModel):
    """The person is (not) a member of another segment now (as its last evaluation decided)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["segment"] = "segment"
    operator: Literal["in", "not_in"] = "in"
    segment_id: str = Field(min_length=1, max_length=64)


Condition = Annotated[
    ConditionGroup | PropertyCondition | TagCondition | ListCondition | StageCondition | StatusCondition | IdentityCondition
    | EventCondition | SessionCountCondition | LastSeenCondition | SegmentCondition,
    Field(discriminator="kind"),
]  # fmt: skip
ConditionGroup.model_rebuild()
condition_adapter: TypeAdapter[Condition] = TypeAdapter(Condition)

IN_MEMORY_KINDS = frozenset({"group", "property"})  # decided from the properties alone (stage rules)
# Decided in memory from the person's facts beside the properties (configs' targeting): the kinds the
# segments' SQL reads from the persons row, and segment membership as the segment evaluator published it.
FACT_KINDS = frozenset({"tag", "list", "stage", "status", "identity", "segment"})
TARGETING_KINDS = IN_MEMORY_KINDS | FACT_KINDS
# Where each fact is among a person's targeting properties (schemas/person_properties.py publishes them).
TAGS, LISTS, STAGE, STATUS, IDENTIFIED, CONTACT, SEGMENTS = (
    "$tags", "$lists", "$stage", "$status", "$is_identified", "$is_contact", "$segments",
)  # fmt: skip


def _shape(condition: BaseModel) -> tuple[int, int]:
    """(nesting depth, number of leaf conditions)."""
    if isinstance(condition, ConditionGroup):
        shapes = [_shape(c) for c in condition.conditions]
        return 1 + max((d for d, _ in shapes), default=0), sum(n for _, n in shapes)
    return 0, 1


def walk(condition: BaseModel) -> Iterator[BaseModel]:
    """Every condition in the tree, groups included, depth first."""
    yield condition
    if isinstance(condition, ConditionGroup):
        for child in condition.conditions:
            yield from walk(child)


def kind_paths(condition: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """(path from the root, e.g. "conditions.1.conditions.0"; "" for the root, kind) of every condition, depth first."""
    yield path, str(getattr(condition, "kind", type(condition).__name__))
    if isinstance(condition, ConditionGroup):
        for index, child in enumerate(condition.conditions):
            yield from kind_paths(child, f"{path}.conditions.{index}" if path else f"conditions.{index}")


def kinds_used(condition: BaseModel) -> set[str]:
    return {str(getattr(c, "kind", type(c).__name__)) for c in walk(condition)}


def properties_used(condition: BaseModel) -> set[str]:
    return {c.property for c in walk(condition) if isinstance(c, PropertyCondition)}


# -- the in-memory evaluator ---------------------------------------------------------------------------


def evaluate(condition: BaseModel, properties: Mapping[str, Any]) -> bool:
    """Whether a person with these properties meets the condition (pure; see the module's semantics)."""
    if isinstance(condition, ConditionGroup):
        results = (evaluate(c, properties) for c in condition.conditions)
        return all(results) if condition.match == "all" else any(results)
    if isinstance(condition, PropertyCondition):
        return property_matches(condition, properties.get(condition.property))
    if isinstance(condition, FACT_CONDITIONS):
        return fact_holds(condition, properties)
    raise NotEvaluableHere(
        f"a '{getattr(condition, 'kind', type(condition).__name__)}' condition is evaluated in ClickHouse, not in memory"
    )


def property_matches(condition: PropertyCondition, actual: Any) -> bool:
    op, expected = condition.operator, condition.value
    if actual is None:
        return op == "is_not_set"
    if op in PRESENCE_OPERATORS:
        return op == "is_set"
    if op in LIST_OPERATORS:
        hit = isinstance(expected, list) and any(equals(actual, member) for member in expected)
        return hit if op == "in" else not hit
    return _OPERATIONS[op](actual, expected)


def text(value: Any) -> str | None:
    """A property as the text operators see it: strings and numbers; booleans as true/false; not objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def instant(value: Any) -> float | None:
    """Epoch milliseconds of an ISO 8601 date-time (naive means UTC) or of a number of milliseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp() * 1000
    return None


def equals(actual: Any, expected: Scalar) -> bool:
    """Typed by the expected value: a boolean matches true/"true", a number matches numerically, text
    matches case-insensitively."""
    if isinstance(expected, bool):
        return isinstance(actual, bool | str) and (text(actual) or "").strip().casefold() == ("true" if expected else "false")
    if isinstance(expected, int | float):
        found = number(actual)
        return found is not None and found == float(expected)
    found_text = text(actual)
    return found_text is not None and found_text.casefold() == expected.casefold()


def _text_op(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def operation(actual: Any, expected: str) -> bool:
        found = text(actual)
        return found is not None and test(found.casefold(), expected.casefold())

    return operation


def _compare(read: Callable[[Any], float | None], test: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def operation(actual: Any, expected: Any) -> bool:
        found, wanted = read(actual), read(expected)
        return found is not None and wanted is not None and test(found, wanted)

    return operation


_OPERATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": equals,
    "not_equals": lambda actual, expected: not equals(actual, expected),
    "contains": _text_op(lambda found, wanted: wanted in found),
    "not_contains": _text_op(lambda found, wanted: wanted not in found),
    "starts_with": _text_op(str.startswith),
    "ends_with": _text_op(str.endswith),
    "gt": _compare(number, float.__gt__),
    "gte": _compare(number, float.__ge__),
    "lt": _compare(number, float.__lt__),
    "lte": _compare(number, float.__le__),
    "before": _compare(instant, float.__lt__),
    "after": _compare(instant, float.__gt__),
}


# -- compiled matchers: the same semantics, decided once per definition instead of once per request ---------

Matcher = Callable[[Mapping[str, Any]], bool]


def compile_condition(condition: BaseModel) -> Matcher:
    """A function equal to `evaluate(condition, ·)` (property-tested), with the expected values prepared once:
    what a collector runs for every request against every config."""
    if isinstance(condition, ConditionGroup):
        children = [compile_condition(c) for c in condition.conditions]
        if condition.match == "all":
            return lambda properties: all(child(properties) for child in children)
        return lambda properties: any(child(properties) for child in children)
    if isinstance(condition, PropertyCondition):
        return _compile_property(condition)
    if isinstance(condition, FACT_CONDITIONS):
        return _compile_fact(condition)
    raise NotEvaluableHere(
        f"a '{getattr(condition, 'kind', type(condition).__name__)}' condition is evaluated in ClickHouse, not in memory"
    )


def _compile_property(condition: PropertyCondition) -> Matcher:
    name, op, expected = condition.property, condition.operator, condition.value
    if op in PRESENCE_OPERATORS:
        wanted = op == "is_set"
        return lambda properties: (properties.get(name) is not None) == wanted
    if op in ("equals", "not_equals", "in", "not_in"):
        members: list[Scalar] = expected if isinstance(expected, list) else [] if expected is None else [expected]
        test = _compile_membership(members)
        negate = op in ("not_equals", "not_in")

        def membership(properties: Mapping[str, Any]) -> bool:
            actual = properties.get(name)
            return actual is not None and test(actual) != negate

        return membership
    if op in TEXT_OPERATORS:
        folded = str(expected).casefold()  # the model's validator: text operators compare with a string
        check: Callable[[str], bool] = {"contains": lambda s: folded in s, "not_contains": lambda s: folded not in s,
                 "starts_with": lambda s: s.startswith(folded), "ends_with": lambda s: s.endswith(folded)}[op]  # fmt: skip

        def text_match(properties: Mapping[str, Any]) -> bool:
            found = text(properties.get(name))
            return found is not None and check(found.casefold())

        return text_match
    read = number if op in NUMBER_OPERATORS else instant
    bound = read(expected)
    if bound is None:  # as `evaluate`: nothing is ordered against a value that is no number or date
        return lambda properties: False
    compare = {
        "gt": float.__gt__,
        "gte": float.__ge__,
        "lt": float.__lt__,
        "lte": float.__le__,
        "before": float.__lt__,
        "after": float.__gt__,
    }[op]

    def ordered(properties: Mapping[str, Any]) -> bool:
        actual = properties.get(name)
        if actual is None:
            return False
        found = read(actual)
        return found is not None and compare(found, bound)

    return ordered


def _compile_membership(members: list[Scalar]) -> Callable[[Any], bool]:
    """Whether a (present) value equals any member, as `equals` decides, with the members prepared once:
    booleans, numbers and case-folded text in sets."""
    booleans = {("true" if m else "false") for m in members if isinstance(m, bool)}
    numbers = {float(m) for m in members if isinstance(m, int | float) and not isinstance(m, bool)}
    texts = {m.casefold() for m in members if isinstance(m, str)}

    def test(actual: Any) -> bool:
        if booleans and isinstance(actual, bool | str) and (text(actual) or "").strip().casefold() in booleans:
            return True
        if numbers and (found := number(actual)) is not None and found in numbers:
            return True
        return bool(texts) and (found_text := text(actual)) is not None and found_text.casefold() in texts

    return test


# -- the person's facts: tags, lists, stage, status, identity, segment membership ----------------------------

FACT_CONDITIONS = (TagCondition, ListCondition, StageCondition, StatusCondition, IdentityCondition, SegmentCondition)


def fact_members(value: Any) -> frozenset[str]:
    """A set-valued fact ($tags, $lists, $segments) as a set of texts; anything else (missing, a string a
    client sent) is empty."""
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(member for member in value if isinstance(member, str))
    return frozenset()


def fact_true(value: Any) -> bool:
    """A boolean fact ($is_identified, $is_contact): true or "true", as `equals … true` decides."""
    return value is not None and equals(value, True)


def fact_stage(value: Any) -> str:
    """The person's stage; "" when none (never set, unknown person, not text)."""
    return value if isinstance(value, str) else ""


def fact_status(value: Any) -> str:
    """The person's status; a person not (yet) on a profile is active, as a profile without a status write is."""
    return value if isinstance(value, str) and value else "active"


def fact_holds(condition: BaseModel, facts: Mapping[str, Any]) -> bool:
    """The reference for the fact kinds (`_compile_fact` is property-tested equal to it, and it to the segments'
    reference evaluator over the same person)."""
    if isinstance(condition, TagCondition):
        return (condition.tag in fact_members(facts.get(TAGS))) == (condition.operator == "has")
    if isinstance(condition, ListCondition):
        return (condition.list_id in fact_members(facts.get(LISTS))) == (condition.operator == "in")
    if isinstance(condition, SegmentCondition):
        return (condition.segment_id in fact_members(facts.get(SEGMENTS))) == (condition.operator == "in")
    if isinstance(condition, StageCondition):
        return (fact_stage(facts.get(STAGE)) in condition.stages) == (condition.operator == "in")
    if isinstance(condition, StatusCondition):
        return fact_status(facts.get(STATUS)) == condition.status
    if isinstance(condition, IdentityCondition):
        if condition.identity in ("identified", "anonymous"):
            return fact_true(facts.get(IDENTIFIED)) == (condition.identity == "identified")
        return fact_true(facts.get(CONTACT)) == (condition.identity == "contact")
    raise NotEvaluableHere(f"a '{getattr(condition, 'kind', type(condition).__name__)}' condition is not a fact of the person")


def _member_test(name: str, member: str, wanted: bool) -> Matcher:
    """`member in fact_members(…)` without building the set per request (a text equals only a text)."""

    def test(facts: Mapping[str, Any]) -> bool:
        found = facts.get(name)
        return (isinstance(found, list | tuple | set | frozenset) and member in found) == wanted

    return test


def _compile_fact(condition: BaseModel) -> Matcher:
    """The fact kinds, with the semantics of the segments' SQL over the persons row (schemas/segments.py):
    tags, lists and segments are exact ids; "" is the stage of a person without one."""
    if isinstance(condition, TagCondition):
        return _member_test(TAGS, condition.tag, condition.operator == "has")
    if isinstance(condition, ListCondition):
        return _member_test(LISTS, condition.list_id, condition.operator == "in")
    if isinstance(condition, SegmentCondition):
        return _member_test(SEGMENTS, condition.segment_id, condition.operator == "in")
    if isinstance(condition, StageCondition):
        stages, inside = frozenset(condition.stages), condition.operator == "in"
        return lambda facts: (fact_stage(facts.get(STAGE)) in stages) == inside
    if isinstance(condition, StatusCondition):
        status = condition.status
        return lambda facts: fact_status(facts.get(STATUS)) == status
    if isinstance(condition, IdentityCondition):
        name, wanted = {"identified": (IDENTIFIED, True), "anonymous": (IDENTIFIED, False),
                        "contact": (CONTACT, True), "not_contact": (CONTACT, False)}[condition.identity]  # fmt: skip
        return lambda facts: fact_true(facts.get(name)) == wanted
    raise NotEvaluableHere(f"a '{getattr(condition, 'kind', type(condition).__name__)}' condition is not a fact of the person")


def references(condition: BaseModel, path: str = "condition") -> list[tuple[str, str, str]]:
    """(field path, "segment" or "list", id) for every segment and list the condition names: what a feature
    checks exists before it accepts the condition (a 422 naming the field otherwise)."""
    found: list[tuple[str, str, str]] = []
    if isinstance(condition, ConditionGroup):
        for index, child in enumerate(condition.conditions):
            found += references(child, f"{path}.conditions.{index}")
    elif isinstance(condition, SegmentCondition):
        found.append((f"{path}.segment_id", "segment", condition.segment_id))
    elif isinstance(condition, ListCondition):
        found.append((f"{path}.list_id", "list", condition.list_id))
    return found
