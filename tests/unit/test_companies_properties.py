"""Properties of the company and membership folds that must hold for any group calls and commands: order
independence, idempotence (duplicates, replays), deletes, and the domain a company is linked by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.companies import (
    EMPTY_COMPANY,
    EMPTY_MEMBER,
    CompanyState,
    MemberState,
    company_exists,
    company_of_command,
    company_of_group_call,
    company_properties,
    domain_of,
    join_companies,
    join_members,
    member_row,
    membership_of_command,
    membership_of_group_call,
)
from projections.rows import epoch_ms
from schemas.companies import CompanyCommand
from schemas.events import EnrichedEvent

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
examples = settings(max_examples=200, deadline=None)
KEYS = ["name", "plan", "website", "domain"]
values = st.one_of(st.none(), st.sampled_from(["Acme", "pro", "https://www.acme.example/", "acme.example"]))
traits = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)

group_shapes = st.fixed_dictionaries({"at": st.integers(0, 20), "traits": traits})
command_shapes = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["upsert", "delete", "member_add", "member_end"]),
        "at": st.integers(0, 20),
        "set": traits,
        "unset": st.lists(st.sampled_from(KEYS), max_size=2),
        "role": st.sampled_from([None, "buyer", "admin"]),
        "primary": st.sampled_from([None, True, False]),
    }
)


def group_calls(drawn: list[dict]) -> list[EnrichedEvent]:
    return [
        EnrichedEvent(
            message_id=f"g{i}",
            type="group",
            group_id="acme",
            timestamp=T0 + timedelta(milliseconds=s["at"]),
            received_at=T0,
            source_id="web",
            user_id="ann",
            person_id="p-ann",
            traits=s["traits"],
        )
        for i, s in enumerate(drawn)
    ]


def commands(drawn: list[dict]) -> list[CompanyCommand]:
    return [
        CompanyCommand(
            kind=s["kind"],
            command_id=f"c{i}",
            company_id="acme",
            at=T0 + timedelta(milliseconds=s["at"]),
            set=s["set"] if s["kind"] == "upsert" else {},
            unset=s["unset"] if s["kind"] == "upsert" else [],
            person_id="p-ann" if s["kind"].startswith("member") else None,
            role=s["role"],
            primary=s["primary"],
        )
        for i, s in enumerate(drawn)
    ]


def company_writes(calls: list[EnrichedEvent], issued: list[CompanyCommand]) -> list[CompanyState]:
    return [company_of_group_call(c) for c in calls] + [company_of_command(c) for c in issued if c.kind in ("upsert", "delete")]


def member_writes(calls: list[EnrichedEvent], issued: list[CompanyCommand]) -> list[MemberState]:
    return [membership_of_group_call(c) for c in calls] + [membership_of_command(c) for c in issued if c.kind.startswith("member")]


@examples
@given(st.lists(group_shapes, max_size=6), st.lists(command_shapes, max_size=6), st.randoms(use_true_random=False))
def test_any_order_and_any_duplicates_give_the_same_company_and_membership(calls, issued, random):
    calls, issued = group_calls(calls), commands(issued)
    companies, members = company_writes(calls, issued), member_writes(calls, issued)
    shuffled = companies + companies[: len(companies) // 2]
    random.shuffle(shuffled)
    assert reduce(join_companies, shuffled, EMPTY_COMPANY) == reduce(join_companies, companies, EMPTY_COMPANY)
    others = members + members[: len(members) // 2]
    random.shuffle(others)
    assert reduce(join_members, others, EMPTY_MEMBER) == reduce(join_members, members, EMPTY_MEMBER)


@examples
@given(st.lists(group_shapes, max_size=6), st.lists(command_shapes, max_size=6))
def test_states_survive_their_json(calls, issued):
    calls, issued = group_calls(calls), commands(issued)
    company = reduce(join_companies, company_writes(calls, issued), EMPTY_COMPANY)
    member = reduce(join_members, member_writes(calls, issued), EMPTY_MEMBER)
    assert CompanyState.from_json(company.to_json()) == company
    assert MemberState.from_json(member.to_json()) == member


@examples
@given(st.lists(group_shapes, max_size=6), st.lists(command_shapes, max_size=6))
def test_each_property_is_its_latest_write_after_the_latest_delete(calls, issued):
    calls, issued = group_calls(calls), commands(issued)
    company = reduce(join_companies, company_writes(calls, issued), EMPTY_COMPANY)
    stamped = [(epoch_ms(c.timestamp), c.message_id, c.traits, []) for c in calls]
    stamped += [(epoch_ms(c.at), c.command_id, c.set, c.unset) for c in issued if c.kind == "upsert"]
    deletes = [(epoch_ms(c.at), c.command_id) for c in issued if c.kind == "delete"]
    deleted = max(deletes, default=None)
    expected: dict = {}
    for at, stamp_id, written, unset in sorted(stamped, key=lambda s: s[:2]):
        if deleted is not None and (at, stamp_id) <= deleted:
            continue
        expected.update(written)
        for key in unset:
            expected[key] = None
    assert company_properties(company) == {k: v for k, v in expected.items() if v is not None}
    assert company_exists(company) == any(deleted is None or (at, i) > deleted for at, i, *_ in stamped)


@examples
@given(st.lists(group_shapes, max_size=6), st.lists(command_shapes, max_size=6))
def test_a_membership_is_active_exactly_when_its_latest_join_or_end_is_a_join(calls, issued):
    calls, issued = group_calls(calls), commands(issued)
    member = reduce(join_members, member_writes(calls, issued), EMPTY_MEMBER)
    writes = [(epoch_ms(c.timestamp), c.message_id, "join") for c in calls]
    writes += [(epoch_ms(c.at), c.command_id, "join" if c.kind == "member_add" else "end") for c in issued if c.kind.startswith("member")]
    row = member_row("acme", "p-ann", member, None, False, 1)
    if not writes:
        assert row[-1] == 1  # no membership at all: the row deletes the pair
        return
    latest = max(writes, key=lambda w: w[:2])
    assert row[6] is (latest[2] == "join")  # is_active
    assert row[4] == min(w[0] for w in writes if w[2] == "join") if any(w[2] == "join" for w in writes) else True


def test_a_derived_link_shows_only_without_an_explicit_membership():
    assert member_row("acme", "p", EMPTY_MEMBER, None, True, 1, 5)[2:9] == ["", False, 5, None, True, True, "domain"]
    ended = membership_of_command(CompanyCommand(kind="member_end", command_id="c", company_id="acme", at=T0, person_id="p"))
    row = member_row("acme", "p", ended, None, True, 1)
    assert (row[6], row[7], row[-1]) == (False, False, 0)  # the team ended it: derived does not bring it back
    assert member_row("acme", "p", EMPTY_MEMBER, None, False, 1)[-1] == 1


def test_a_company_delete_hides_the_memberships_written_before_it():
    joined = membership_of_command(CompanyCommand(kind="member_add", command_id="c1", company_id="acme", at=T0, person_id="p"))
    deleted = company_of_command(CompanyCommand(kind="delete", command_id="c2", company_id="acme", at=T0 + timedelta(seconds=1)))
    assert member_row("acme", "p", joined, deleted.deleted, False, 1)[-1] == 1
    assert member_row("acme", "p", joined, None, False, 1)[-1] == 0


def test_the_domain_is_the_domain_property_else_the_websites_host():
    assert domain_of({"domain": "Acme.Example"}) == "acme.example"
    assert domain_of({"website": "https://www.acme.example/pricing"}) == "acme.example"
    assert domain_of({"website": "acme.example"}) == "acme.example"
    assert domain_of({"domain": "", "website": "http://shop.acme.example:8080"}) == "shop.acme.example"
    assert domain_of({"website": 42}) == "" and domain_of({}) == ""
    assert domain_of({"website": "http://[bad"}) == ""
