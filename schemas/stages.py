"""Lifecycle stages: their definitions, the order they are in, and how a person's stage follows from its
stage writes. Pure: no I/O.

Definitions live on the compacted `lifecycle-stages` topic (key: the stage id; every API process and every
projector follows it whole). The defaults exist without a record; a record overrides a default of its id;
a record with `deleted` removes the stage (and names the stage its users were moved to).

A person's stage is decided by its stage writes (commands on `user-commands`: schemas/user_commands.py),
walked in stamp order (command time, command id):
- a manual write (API, import, a stage's deletion) sets the stage, backwards too, and keeps its reason;
- a rule write is a compare-and-set: it names the stage its decider saw (`from_stage`) and applies only if
  the person is still there, and only if the same rule has not moved the person before. Deciders decide
  a rule move only forward, so a manual move back is never undone by a rule.
Every write that changed the stage is one entry of the person's history. The walk depends only on the set
of writes, so a replay (any interleaving, any batching) rebuilds the same stage and history.

Two deciders, one kind of write: a rule made only of property conditions and groups is decided in memory
by the projector whenever the person's profile changes (`StageRules`); any other rule (behaviour, sessions,
last seen, tags, lists, stage, status, identity, segment membership) by the segment evaluator in ClickHouse
(`ClickHouseRule`, `owed_moves`). Both derive a move's command id from (person, rule, stage moved from), so
a move decided again (a crash, a re-evaluation, the other decider) is the same command, kept once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from schemas.conditions import IN_MEMORY_KINDS, Condition, compile_condition, kinds_used, properties_used
from schemas.person_properties import DERIVED_FOR_TARGETING
from schemas.segments import COLUMN_PROPERTIES
from schemas.user_commands import COMMAND_NAMESPACE, UserCommand

STAGE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
DEFAULT_STAGE_IDS = (
    "visitor", "subscriber", "lead", "marketing_qualified_lead", "sales_qualified_lead",
    "opportunity", "customer", "evangelist", "other",
)  # fmt: skip
RULE_PREFIX = "rule:"


class StageDefinition(BaseModel):
    """One lifecycle stage. `order` sorts the stages (ties by id); `rule`: the condition (any of the segment
    language) that moves a user forward into this stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=STAGE_ID_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    order: int = Field(ge=0, le=1_000_000)
    rule: Condition | None = None
    version: int = 0
    built_in: bool = False
    deleted: bool = False
    moved_to: str | None = None  # deleted: where its users went
    updated_at: datetime | None = None


def _default_name(stage_id: str) -> str:
    return stage_id.replace("_", " ").capitalize()


DEFAULT_STAGES: dict[str, StageDefinition] = {
    stage_id: StageDefinition(id=stage_id, name=_default_name(stage_id), order=index * 10, built_in=True)
    for index, stage_id in enumerate(DEFAULT_STAGE_IDS)
}


def effective_stages(records: Iterable[StageDefinition]) -> list[StageDefinition]:
    """The stages in force, in order: the defaults, overridden by each id's newest record (a deleted one drops it)."""
    latest: dict[str, StageDefinition] = {}
    for record in records:
        if record.id not in latest or record.version >= latest[record.id].version:
            latest[record.id] = record
    current = {**DEFAULT_STAGES, **latest}
    return sorted((s for s in current.values() if not s.deleted), key=lambda s: (s.order, s.id))


def latest_records(records: Iterable[StageDefinition]) -> dict[str, StageDefinition]:
    """The newest record of each id (deleted ones included), with the defaults under them."""
    latest: dict[str, StageDefinition] = dict(DEFAULT_STAGES)
    for record in records:
        if record.id not in latest or latest[record.id].built_in or record.version >= latest[record.id].version:
            latest[record.id] = record
    return latest


def reordered(stages: Sequence[StageDefinition], ids: Sequence[str]) -> list[tuple[str, int]]:
    """(id, new order) for each stage whose order changes when the stages take the order of `ids` (every
    stage, each once): spaced by 10, so one can later be put between two without renumbering."""
    if sorted(ids) != sorted(s.id for s in stages):
        raise ValueError("list every stage exactly once")
    current = {s.id: s.order for s in stages}
    return [(stage_id, index * 10) for index, stage_id in enumerate(ids) if current[stage_id] != index * 10]


def rank_of(stages: Sequence[StageDefinition]) -> dict[str, int]:
    """Stage id → its position (0 first). A person with no stage ("") ranks before every stage."""
    return {s.id: index for index, s in enumerate(stages)}


def rule_id(stage_id: str) -> str:
    return f"{RULE_PREFIX}{stage_id}"


# Derived properties the projector's in-memory rules cannot see (they are not among the targeting properties it
# evaluates: schemas/person_properties.py): a rule naming one is decided in ClickHouse, where they are columns.
NOT_IN_MEMORY = frozenset(name for name in COLUMN_PROPERTIES if name.startswith("$") and name[1:] not in DERIVED_FOR_TARGETING)


def decided_in_memory(rule: Condition) -> bool:
    """Whether the projector decides the rule from the profile alone (else the segment evaluator, in ClickHouse)."""
    return kinds_used(rule) <= IN_MEMORY_KINDS and not (properties_used(rule) & NOT_IN_MEMORY)


def move_command_id(person_id: str, rule: str, from_stage: str) -> str:
    """The id of the rule's move of the person out of `from_stage`: whoever decides it, however often."""
    return str(uuid.uuid5(COMMAND_NAMESPACE, f"stage-rule\x00{person_id}\x00{rule}\x00{from_stage}"))


def move_command(person_id: str, move: RuleMove, from_stage: str, at: datetime) -> UserCommand:
    """A rule's move as a command on user-commands: a compare-and-set from `from_stage`."""
    return UserCommand(
        kind="update",
        command_id=move_command_id(person_id, move.rule, from_stage),
        person_id=person_id,
        at=at,
        stage=move.stage,
        stage_by=move.rule,
        stage_from=from_stage,
        by=move.rule,
    )


class RuleMove(NamedTuple):
    stage: str
    rule: str


class StageRules:
    """The stages' rules, compiled once per version of the definitions."""

    def __init__(self, stages: Sequence[StageDefinition]):
        self.rank = rank_of(stages)
        # Highest stage first: a person meeting several rules goes straight to the furthest one. Rules that need
        # ClickHouse are the segment evaluator's (ClickHouseRule).
        self.rules = [
            (s.id, rule_id(s.id), compile_condition(s.rule)) for s in reversed(stages) if s.rule is not None and decided_in_memory(s.rule)
        ]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def move(self, current: str, fired: set[str], properties: Mapping[str, Any]) -> RuleMove | None:
        """The forward move the rules make for a person now at `current` (never back, never sideways),
        skipping rules that already fired for this person; None when there is none."""
        here = self.rank.get(current, -1)
        for stage_id, rule, matches in self.rules:
            if self.rank[stage_id] <= here:
                return None
            if rule not in fired and matches(properties):
                return RuleMove(stage_id, rule)
        return None


class StageWrite(NamedTuple):
    """One stage write as a person's state keeps it (stamp first, so writes sort by stamp)."""

    at: int  # ms since the epoch
    command_id: str
    stage: str
    by: str  # "api", "import" or "rule:<stage id>"
    reason: str = ""
    from_stage: str | None = None  # rule writes: the stage the rule moved the person from


class StageEntry(NamedTuple):
    write: StageWrite
    from_stage: str
    effective: bool  # False: a rule write whose compare-and-set failed, or a write that changed nothing


def walk_stages(writes: Iterable[StageWrite]) -> tuple[str, list[StageEntry]]:
    """The person's stage ("" when none was ever set) and every write, each marked whether it took effect: a
    rule write only if its compare-and-set holds and the same rule has not moved the person before."""
    current = ""
    entries = []
    moved_by: set[str] = set()  # the rules that have moved the person
    for write in sorted(set(writes), key=lambda w: (w.at, w.command_id, repr(w))):
        applies = write.from_stage in (None, current) and write.by not in moved_by and write.stage != current
        entries.append(StageEntry(write, current, applies))
        if applies:
            current = write.stage
            if write.by.startswith(RULE_PREFIX):
                moved_by.add(write.by)
    return current, entries


def fired_rules(writes: Iterable[StageWrite]) -> set[str]:
    """The rules that have moved the person (a rule write that did not take effect does not count: its rule
    may still move the person, from the stage it is really in)."""
    return {e.write.by for e in walk_stages(writes)[1] if e.effective and e.write.by.startswith(RULE_PREFIX)}


# -- rules decided in ClickHouse (by the segment evaluator) ------------------------------------------------------


class ClickHouseRule(NamedTuple):
    """A stage rule that needs ClickHouse: the stage it moves into, its rule id, its condition, and the stages a
    person may already be in for it not to apply (this one and every later one)."""

    stage: str
    rule: str
    condition: Any  # a Condition
    version: int
    reached: tuple[str, ...]


def clickhouse_rules(stages: Sequence[StageDefinition]) -> list[ClickHouseRule]:
    """The rules the segment evaluator decides, furthest stage first."""
    found = []
    for index in reversed(range(len(stages))):
        stage = stages[index]
        if stage.rule is not None and not decided_in_memory(stage.rule):
            reached = tuple(s.id for s in stages[index:])
            found.append(ClickHouseRule(stage.id, rule_id(stage.id), stage.rule, stage.version, reached))
    return found


def candidates_query(rule: ClickHouseRule, condition_sql: str, parameters: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """SQL for the persons meeting the rule (its condition compiled to `condition_sql` over `persons`) that are in a
    stage before the rule's and that this rule has never moved: (person id, stage) rows."""
    sql = (
        "SELECT person_id, stage FROM {db}.persons FINAL "
        "WHERE NOT has({stage_rule_reached:Array(String)}, stage) "
        "AND person_id NOT IN (SELECT person_id FROM {db}.stage_history FINAL WHERE by = {stage_rule:String} AND effective) "
        f"AND {condition_sql}"
    )
    return sql, {**parameters, "stage_rule_reached": list(rule.reached), "stage_rule": rule.rule}


class OwedMove(NamedTuple):
    person_id: str
    from_stage: str
    move: RuleMove

    @property
    def command_id(self) -> str:
        return move_command_id(self.person_id, self.move.rule, self.from_stage)


def owed_moves(candidates: Sequence[tuple[ClickHouseRule, Iterable[tuple[str, str]]]], written: Iterable[str]) -> list[OwedMove]:
    """The moves to publish: for each person, the furthest rule it was found a candidate of (`candidates`: each rule,
    furthest first, with its (person id, current stage) rows), unless that move's command is already among the
    person's stage writes (`written` command ids: decided before, whether it took effect or not)."""
    done = set(written)
    chosen: dict[str, OwedMove] = {}
    for rule, rows in candidates:
        for person_id, current in rows:
            owed = OwedMove(person_id, current, RuleMove(rule.stage, rule.rule))
            if person_id not in chosen and current not in rule.reached and owed.command_id not in done:
                chosen[person_id] = owed
    return sorted(chosen.values())
