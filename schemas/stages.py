"""Lifecycle stages: their definitions, the order they are in, and how a person's stage follows from its
stage writes. Pure: no I/O.

Definitions live on the compacted `lifecycle-stages` topic (key: the stage id; every API process and every
projector follows it whole). The defaults exist without a record; a record overrides a default of its id;
a record with `deleted` removes the stage (and names the stage its users were moved to).

A person's stage is decided by its stage writes (commands on `user-commands`: schemas/user_commands.py),
walked in stamp order (command time, command id):
- a manual write (API, import, a stage's deletion) sets the stage, backwards too, and keeps its reason;
- a rule write is a compare-and-set: it names the stage the projector saw when it decided (`from_stage`)
  and applies only if the person is still there. The projector decides a rule move only forward, and
  each rule at most once per person, so a manual move back is not undone by the rule that moved the
  person forward before.
Every write that changed the stage is one entry of the person's history. The walk depends only on the set
of writes, so a replay (any interleaving, any batching) rebuilds the same stage and history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from schemas.conditions import Condition, compile_condition

STAGE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
DEFAULT_STAGE_IDS = (
    "visitor", "subscriber", "lead", "marketing_qualified_lead", "sales_qualified_lead",
    "opportunity", "customer", "evangelist", "other",
)  # fmt: skip
RULE_PREFIX = "rule:"


class StageDefinition(BaseModel):
    """One lifecycle stage. `order` sorts the stages (ties by id); `rule`: the condition that moves a user
    forward into this stage (property conditions, evaluated by the projector when a profile changes)."""

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


class RuleMove(NamedTuple):
    stage: str
    rule: str


class StageRules:
    """The stages' rules, compiled once per version of the definitions."""

    def __init__(self, stages: Sequence[StageDefinition]):
        self.rank = rank_of(stages)
        # Highest stage first: a person meeting several rules goes straight to the furthest one.
        self.rules = [(s.id, rule_id(s.id), compile_condition(s.rule)) for s in reversed(stages) if s.rule is not None]

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
    """The person's stage ("" when none was ever set) and every write, each marked whether it took effect."""
    current = ""
    entries = []
    for write in sorted(set(writes), key=lambda w: (w.at, w.command_id, repr(w))):
        applies = (write.from_stage is None or write.from_stage == current) and write.stage != current
        entries.append(StageEntry(write, current, applies))
        if applies:
            current = write.stage
    return current, entries


def fired_rules(writes: Iterable[StageWrite]) -> set[str]:
    return {w.by for w in writes if w.by.startswith(RULE_PREFIX)}
