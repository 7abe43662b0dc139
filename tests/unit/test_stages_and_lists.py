"""Lifecycle stages and static lists, the pure parts: the order of stages, the rules' forward-only moves, the
stage walk and the membership periods (any order and redelivery of writes give the same result)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.groups import group_rows, rule_commands
from projections.profiles import EMPTY, ProfileState, apply_command, list_writes, merge, person_row, stage_writes
from schemas.conditions import ConditionGroup, EventCondition, PropertyCondition, TagCondition
from schemas.lists import ListWrite, current_lists, memberships
from schemas.stages import (
    DEFAULT_STAGE_IDS,
    DEFAULT_STAGES,
    StageDefinition,
    StageRules,
    StageWrite,
    candidates_query,
    clickhouse_rules,
    decided_in_memory,
    effective_stages,
    fired_rules,
    move_command,
    move_command_id,
    owed_moves,
    reordered,
    walk_stages,
)
from schemas.user_commands import UserCommand

STAGES = list(DEFAULT_STAGE_IDS)
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def has(name: str) -> PropertyCondition:
    return PropertyCondition(property=name, operator="is_set")


def staged(*rules: tuple[str, str]) -> list[StageDefinition]:
    """The default stages, with a rule `<property> is set` on some of them."""
    ruled = dict(rules)
    return effective_stages(
        [s.model_copy(update={"rule": has(ruled[s.id]), "version": 1}) for s in DEFAULT_STAGES.values() if s.id in ruled]
    )


# -- definitions and order ------------------------------------------------------------------------------------


def test_the_defaults_come_in_the_order_of_the_journey():
    assert [s.id for s in effective_stages([])] == STAGES
    assert effective_stages([])[0].name == "Visitor" and effective_stages([])[3].name == "Marketing qualified lead"


def test_a_newer_record_renames_moves_or_deletes_a_stage():
    records = [
        StageDefinition(id="lead", name="Prospect", order=5, version=1),
        StageDefinition(id="other", name="Other", order=80, version=1, deleted=True, moved_to="visitor"),
        StageDefinition(id="churned", name="Churned", order=1000, version=1),
        StageDefinition(id="lead", name="Old name", order=20, version=0),
    ]
    stages = effective_stages(records)
    assert [s.id for s in stages][:2] == ["visitor", "lead"] and stages[1].name == "Prospect"
    assert "other" not in {s.id for s in stages} and stages[-1].id == "churned"


@given(st.permutations(STAGES))
def test_reordering_puts_the_stages_in_the_order_given(ids):
    stages = effective_stages([])
    changes = dict(reordered(stages, ids))
    moved = [s.model_copy(update={"order": changes.get(s.id, s.order), "version": 1}) for s in stages]
    assert [s.id for s in effective_stages(moved)] == list(ids)
    assert all(changes[i] != s.order for s in stages for i in changes if i == s.id)  # only real changes are written


def test_reordering_needs_every_stage_once():
    with pytest.raises(ValueError):
        reordered(effective_stages([]), STAGES[:-1])
    with pytest.raises(ValueError):
        reordered(effective_stages([]), [*STAGES, "lead"])


# -- rules: forward only, each once ---------------------------------------------------------------------------

RULES = staged(("lead", "email"), ("customer", "order_id"), ("subscriber", "newsletter"))
PROPS = st.dictionaries(st.sampled_from(["email", "order_id", "newsletter", "plan"]), st.just("x"), max_size=4)


@given(
    current=st.sampled_from(["", *STAGES]),
    properties=PROPS,
    fired=st.sets(st.sampled_from(["rule:lead", "rule:customer", "rule:subscriber"])),
)
def test_a_rule_never_moves_a_user_back_or_sideways_and_fires_once(current, properties, fired):
    rules = StageRules(RULES)
    move = rules.move(current, fired, properties)
    rank = {s: i for i, s in enumerate(STAGES)}
    if move is None:
        # nothing was owed: no unfired matching rule ahead of the current stage
        ahead = [
            s
            for s, p in (("lead", "email"), ("customer", "order_id"), ("subscriber", "newsletter"))
            if rank[s] > rank.get(current, -1) and f"rule:{s}" not in fired and p in properties
        ]
        assert ahead == []
    else:
        assert rank[move.stage] > rank.get(current, -1)
        assert move.rule == f"rule:{move.stage}" and move.rule not in fired
        # the furthest stage whose rule matches
        assert all(
            not (rank[s] > rank[move.stage] and p in properties and f"rule:{s}" not in fired)
            for s, p in (("lead", "email"), ("customer", "order_id"), ("subscriber", "newsletter"))
        )


def test_no_rules_no_moves():
    assert not StageRules(effective_stages([]))
    assert StageRules(effective_stages([])).move("", set(), {"email": "a@b.c"}) is None


# -- the stage walk -------------------------------------------------------------------------------------------

WRITES = st.lists(
    st.builds(
        StageWrite,
        at=st.integers(0, 50),
        command_id=st.sampled_from(["a", "b", "c", "d", "e"]),
        stage=st.sampled_from(STAGES[:4]),
        by=st.sampled_from(["api", "import", "rule:lead"]),
        reason=st.sampled_from(["", "why"]),
        from_stage=st.sampled_from([None, "", "visitor", "lead"]),
    ),
    max_size=8,
)


@given(WRITES, st.randoms())
def test_the_walk_depends_on_the_set_of_writes_only(writes, random):
    shuffled = [*writes, *writes[:2]]
    random.shuffle(shuffled)
    assert walk_stages(shuffled) == walk_stages(writes)


@given(WRITES)
def test_the_history_chains_and_ends_at_the_stage(writes):
    stage, entries = walk_stages(writes)
    current = ""
    for entry in entries:
        assert entry.from_stage == current
        if entry.effective:
            assert entry.write.stage != current
            assert entry.write.from_stage in (None, current)  # a rule's compare-and-set held
            current = entry.write.stage
    assert stage == current


def test_a_manual_move_back_is_kept_and_the_rule_that_moved_forward_does_not_undo_it():
    rule = StageWrite(10, "r", "customer", "rule:customer", "", "lead")
    writes = [StageWrite(5, "m1", "lead", "api"), rule, StageWrite(20, "m2", "lead", "api", "refund")]
    stage, entries = walk_stages(writes)
    assert stage == "lead" and [e.effective for e in entries] == [True, True, True]
    assert entries[-1].from_stage == "customer" and entries[-1].write.reason == "refund"
    fired = {w.by for w in writes if w.by.startswith("rule:")}
    assert StageRules(staged(("customer", "order_id"))).move(stage, fired, {"order_id": 1}) is None


def test_a_rule_write_decided_on_a_stale_stage_does_not_apply():
    stage, entries = walk_stages([StageWrite(5, "m", "opportunity", "api"), StageWrite(6, "r", "lead", "rule:lead", "", "")])
    assert stage == "opportunity" and entries[-1].effective is False
    assert fired_rules(w for w, _, _ in entries) == set()  # it never moved the person: the rule may still, from opportunity


RULE_WRITES = st.lists(
    st.builds(
        StageWrite,
        at=st.integers(0, 50),
        command_id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        stage=st.sampled_from(STAGES[:7]),
        by=st.sampled_from(["api", "rule:lead", "rule:customer"]),
        reason=st.just(""),
        from_stage=st.sampled_from([None, "", "visitor", "lead", "opportunity"]),
    ).map(lambda w: w._replace(from_stage=None) if w.by == "api" else w._replace(from_stage=w.from_stage or "")),
    max_size=10,
)


@given(RULE_WRITES)
def test_a_rule_moves_a_person_at_most_once_whatever_its_deciders_sent(writes):
    """However often and from whatever stale stage a rule's moves were decided (two deciders, restarts, a lagging
    ClickHouse), the walk applies each rule once: after a manual move back, the rule does not move the person again."""
    _, entries = walk_stages(writes)
    effective_rules = [e.write.by for e in entries if e.effective and e.write.by.startswith("rule:")]
    assert len(effective_rules) == len(set(effective_rules))
    assert fired_rules(writes) == set(effective_rules)


def test_a_rule_decided_again_from_a_stale_view_after_a_manual_move_back_does_not_undo_it():
    moved = StageWrite(10, "r1", "customer", "rule:customer", "", "opportunity")
    writes = [
        StageWrite(1, "m1", "lead", "api"),
        StageWrite(5, "m2", "opportunity", "api"),
        moved,
        StageWrite(20, "m3", "lead", "api", "refund"),
    ]
    # A decider that read the person at lead before m2 was projected, deciding only now (at 30): the same rule, from lead.
    stale = StageWrite(30, move_command_id("p-1", "rule:customer", "lead"), "customer", "rule:customer", "", "lead")
    stage, entries = walk_stages([*writes, stale])
    assert stage == "lead" and entries[-1].write == stale and not entries[-1].effective


# -- rules decided in ClickHouse (the segment evaluator) ------------------------------------------------------

BOUGHT = ConditionGroup(conditions=[EventCondition(event="Order Completed", count=1, days=30)])
VIP = TagCondition(tag="vip")


def test_only_property_rules_are_the_projectors_the_rest_go_to_clickhouse():
    stages = effective_stages(
        [
            DEFAULT_STAGES["lead"].model_copy(update={"rule": has("email"), "version": 1}),
            DEFAULT_STAGES["opportunity"].model_copy(update={"rule": VIP, "version": 2}),
            DEFAULT_STAGES["customer"].model_copy(update={"rule": BOUGHT, "version": 3}),
        ]
    )
    assert [(stage, rule) for stage, rule, _ in StageRules(stages).rules] == [("lead", "rule:lead")]
    found = clickhouse_rules(stages)
    assert [(r.stage, r.rule, r.version) for r in found] == [("customer", "rule:customer", 3), ("opportunity", "rule:opportunity", 2)]
    assert found[0].reached == ("customer", "evangelist", "other")
    assert found[1].reached == ("opportunity", "customer", "evangelist", "other")


def test_a_property_rule_on_a_column_the_projector_does_not_carry_is_decided_in_clickhouse():
    assert decided_in_memory(PropertyCondition(property="$email_domain", operator="equals", value="acme.com"))
    assert decided_in_memory(ConditionGroup(conditions=[has("email"), has("plan")]))
    for name in ("$session_count", "$event_count", "$first_seen", "$last_seen"):
        assert not decided_in_memory(ConditionGroup(conditions=[has("email"), PropertyCondition(property=name, operator="is_set")]))


def test_the_candidates_query_carries_every_value_as_a_parameter():
    rule = clickhouse_rules(effective_stages([DEFAULT_STAGES["customer"].model_copy(update={"rule": BOUGHT, "version": 1})]))[0]
    sql, parameters = candidates_query(rule, "(x = {p0:String})", {"p0": "Order Completed"})
    assert "Order Completed" not in sql and "customer" not in sql
    assert parameters == {"p0": "Order Completed", "stage_rule_reached": ["customer", "evangelist", "other"], "stage_rule": "rule:customer"}


RANK = {stage: index for index, stage in enumerate(STAGES)}
CH_RULES = clickhouse_rules(
    effective_stages(
        [
            DEFAULT_STAGES["lead"].model_copy(update={"rule": VIP, "version": 1}),
            DEFAULT_STAGES["customer"].model_copy(update={"rule": BOUGHT, "version": 1}),
        ]
    )
)
PEOPLE = st.sampled_from(["p-1", "p-2", "p-3"])
ROWS = st.lists(st.tuples(PEOPLE, st.sampled_from(["", *STAGES])), max_size=6)


@given(
    st.tuples(ROWS, ROWS),
    st.sets(
        st.sampled_from(
            [move_command_id(p, r, s) for p in ("p-1", "p-2") for r in ("rule:lead", "rule:customer") for s in ("", "visitor", "lead")]
        )
    ),
)
def test_owed_moves_go_forward_to_the_furthest_rule_once_per_person_and_skip_what_was_decided(rows, written):
    candidates = list(zip(CH_RULES, rows, strict=True))
    moves = owed_moves(candidates, written)
    assert len({m.person_id for m in moves}) == len(moves)
    for owed in moves:
        assert RANK[owed.move.stage] > RANK.get(owed.from_stage, -1)  # forward only
        assert owed.command_id not in written and owed.command_id == move_command_id(owed.person_id, owed.move.rule, owed.from_stage)
        further = [(r, found) for r, found in candidates if RANK[r.stage] > RANK[owed.move.stage]]
        for rule, found in further:  # a further rule it was a candidate of was either behind it or decided already
            for person_id, current in found:
                if person_id == owed.person_id:
                    assert current in rule.reached or move_command_id(person_id, rule.rule, current) in written
    assert owed_moves(candidates, written) == moves  # decided again: the same moves, the same command ids


def test_a_move_decided_twice_is_one_write_at_its_first_place():
    """A restarted evaluator (or the other decider) sends the move again with a later time: the state keeps the first."""
    owed = owed_moves([(CH_RULES[0], [("p-1", "lead")])], ())[0]
    first, again = (
        move_command("p-1", owed.move, "lead", AT.replace(second=30)),
        move_command("p-1", owed.move, "lead", AT.replace(hour=13)),
    )
    assert first.command_id == again.command_id and first.by == first.stage_by == "rule:customer"
    manual = [command("c1", 1, stage="lead", stage_by="api"), command("c2", 59, stage="lead", stage_by="api", stage_reason="refund")]
    back = EMPTY
    for c in [manual[0], first, manual[1]]:
        back = apply_command(back, c)
    for order in itertools.permutations([*manual, first, again]):  # the late copy folds away, in any order
        state = EMPTY
        for c in order:
            state = apply_command(state, c)
        assert state.stages == back.stages
    stage, entries = walk_stages(stage_writes(apply_command(back, again).stages))
    assert stage == "lead" and [e.write.by for e in entries if e.effective] == ["api", "rule:customer", "api"]


# -- commands into profiles and rows --------------------------------------------------------------------------


def command(command_id: str, second: int, **fields) -> UserCommand:
    return UserCommand(kind="update", command_id=command_id, person_id="p-1", at=AT.replace(second=second), **fields)


COMMANDS = [
    command("c1", 1, stage="lead", stage_by="api", stage_reason="form"),
    command("c2", 2, lists_add=["vip", "beta"], lists_by="ann"),
    command("c3", 3, stage="customer", stage_by="rule:customer", stage_from="lead"),
    command("c4", 4, lists_remove=["beta"], lists_by="bob"),
    command("c5", 5, stage="lead", stage_by="api", stage_reason="refund"),
    command("c6", 6, lists_add=["beta"], lists_by="import"),
]


@given(st.permutations(COMMANDS), st.integers(0, 5))
def test_commands_fold_to_one_state_in_any_order_and_redelivered(order, repeat):
    state = EMPTY
    for c in [*order, *order[:repeat]]:
        state = apply_command(state, c)
    expected = EMPTY
    for c in COMMANDS:
        expected = apply_command(expected, c)
    assert state == expected
    assert ProfileState.from_json(state.to_json()) == state
    assert walk_stages(stage_writes(state.stages))[0] == "lead"
    assert current_lists(list_writes(state.lists)) == ["beta", "vip"]


def test_the_rows_hold_the_history_and_the_membership_periods():
    state = EMPTY
    for c in COMMANDS:
        state = apply_command(state, c)
    row = person_row("p-1", state, None, 0, 0, 7)
    history, members = group_rows([row])
    assert [(h[2], h[3], h[5], h[6], h[7]) for h in history] == [
        ("lead", "", "api", "form", True),
        ("customer", "lead", "rule:customer", "", True),
        ("lead", "customer", "api", "refund", True),
    ]
    periods = sorted((m[0], m[4], m[5] is not None, m[6], m[8]) for m in members)
    assert periods == [("beta", "ann", True, "bob", 0), ("beta", "import", False, "", 0), ("vip", "ann", False, "", 0)]


def test_a_merge_keeps_intos_stage_history_and_both_lists():
    into = apply_command(apply_command(EMPTY, COMMANDS[0]), COMMANDS[1])
    absorbed = apply_command(
        EMPTY,
        UserCommand(
            kind="update", command_id="x", person_id="p-2", at=AT, stage="evangelist", stage_by="api", lists_add=["other"], lists_by="api"
        ),
    )
    merged = merge(into, absorbed)
    assert walk_stages(stage_writes(merged.stages))[0] == "lead"
    assert current_lists(list_writes(merged.lists)) == ["beta", "other", "vip"]
    assert walk_stages(stage_writes(merge(EMPTY, absorbed).stages))[0] == "evangelist"


def test_the_projector_moves_a_matching_user_forward_once_with_a_stable_command_id():
    rules = StageRules(staged(("lead", "email"), ("customer", "order_id")))
    state = apply_command(EMPTY, command("c0", 0, set={"email": "a@b.c"}))
    row = person_row("p-1", state, None, 0, 0, 1)
    [move] = rule_commands([row], rules, AT)
    assert (move.stage, move.stage_by, move.stage_from) == ("lead", "rule:lead", "")
    assert rule_commands([row], rules, AT.replace(hour=13))[0].command_id == move.command_id  # a crash decides it again: same command
    moved = person_row("p-1", apply_command(state, move), None, 0, 0, 2)
    assert rule_commands([moved], rules, AT) == []
    backwards = apply_command(apply_command(state, move), command("c9", 9, stage="visitor", stage_by="api", stage_reason="test account"))
    assert rule_commands([person_row("p-1", backwards, None, 0, 0, 3)], rules, AT) == []  # rule:lead fired already


def test_a_rule_move_whose_compare_and_set_failed_is_decided_again_from_the_real_stage_once():
    rules = StageRules(staged(("lead", "email")))
    state = apply_command(EMPTY, command("c0", 0, set={"email": "a@b.c"}))
    [stale] = rule_commands([person_row("p-1", state, None, 0, 0, 1)], rules, AT.replace(second=5))  # decided at "" ...
    raced = apply_command(apply_command(state, command("c1", 1, stage="visitor", stage_by="api")), stale)  # ... visitor came first
    assert walk_stages(stage_writes(raced.stages))[0] == "visitor"
    [again] = rule_commands([person_row("p-1", raced, None, 0, 0, 2)], rules, AT)
    assert (again.stage_from, again.stage) == ("visitor", "lead") and again.command_id != stale.command_id
    # the clock of the API ahead of the projector's: a write from "visitor" that still cannot apply is not sent over and over
    future = apply_command(state, command("c1", 1, stage="visitor", stage_by="api").model_copy(update={"at": AT.replace(hour=20)}))
    [early] = rule_commands([person_row("p-1", future, None, 0, 0, 3)], rules, AT)
    assert rule_commands([person_row("p-1", apply_command(future, early), None, 0, 0, 4)], rules, AT) == []


# -- membership periods ---------------------------------------------------------------------------------------

LIST_WRITES = st.lists(
    st.builds(
        ListWrite,
        at=st.integers(0, 30),
        command_id=st.sampled_from(["a", "b", "c", "d"]),
        list_id=st.sampled_from(["l1", "l2"]),
        added=st.booleans(),
        by=st.sampled_from(["api", "ann"]),
    ),
    max_size=10,
)


@given(LIST_WRITES, st.randoms())
def test_membership_periods_follow_the_writes_in_stamp_order(writes, random):
    shuffled = [*writes, *writes[:3]]
    random.shuffle(shuffled)
    assert memberships(shuffled) == memberships(writes)
    member: dict[str, bool] = {}
    for write in sorted(set(writes)):  # the reference: replay the writes one by one
        member[write.list_id] = write.added
    assert current_lists(writes) == sorted(list_id for list_id, is_member in member.items() if is_member)
    periods, _ = memberships(writes)
    for period in periods:
        assert period.opened_by.added and (period.closed_by is None or (not period.closed_by.added and period.closed_by > period.opened_by))


# -- CSV import: the stage column ------------------------------------------------------------------------------


def test_an_import_row_carries_its_stage_checked_against_the_stages():
    from api.import_rows import ImportOptions, RowError, plan_columns, read_row
    from schemas.properties import BUILT_IN

    options = ImportOptions(stages=frozenset(STAGES))
    plan = plan_columns(["user_id", "Lifecycle Stage"], options, BUILT_IN)
    row = read_row(2, ["u-1", "customer"], plan, options, BUILT_IN)
    assert row.stage == "customer" and "stage" not in row.properties
    unstaged = read_row(3, ["u-1", ""], plan, options, BUILT_IN)
    assert unstaged.stage is None and unstaged.command_id != row.command_id  # a new stage is a new command
    [error] = read_row(4, ["u-2", "astronaut"], plan, options, BUILT_IN)
    assert isinstance(error, RowError) and (error.column, error.rule) == ("Lifecycle Stage", "one_of")


def test_the_peoples_bulk_edit_sets_stages_and_list_memberships():
    from api.console.pages.people import _bulk_plan

    body, summary, error = _bulk_plan({"action": "stage", "value": "customer"})
    assert body == {"action": "update", "update": {"stage": "customer", "stage_reason": "bulk edit in the console"}} and not error
    body, summary, _ = _bulk_plan({"action": "list", "name": "beta"})
    assert body["update"]["lists"] == {"add": ["beta"], "by": "console"} and summary == "Add to list beta"
    assert _bulk_plan({"action": "unlist", "name": "beta"})[0]["update"]["lists"] == {"remove": ["beta"], "by": "console"}
    assert _bulk_plan({"action": "list", "name": ""})[2] == "Give the list id."
