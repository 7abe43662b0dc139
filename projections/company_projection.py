"""The companies projection: fold a batch's group calls and company commands into `companies` and
`company_members`, keep derived memberships (by email domain) and each company's member count and last seen.

Read-modify-write per batch against ClickHouse, as the persons projection does (projections/persons.py): load
the touched companies' and memberships' fold state (the latest row of each, deleted ones included, so a delete
is remembered), join the batch's writes (projections/companies.py: order-independent and idempotent), write
the memberships, then count each touched company's active members and their latest last_seen from the
tables. Runs after the persons rows of the batch are written: derived links and last_seen read them.

    group calls, company commands ─► company and membership states ─► derived links ─► company_members
    persons written, merges, deletes ─────────────────────────────────────┘            └─► counts ─► companies
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from projections.companies import (
    COMPANIES,
    COMPANY_MEMBERS,
    EMPTY_COMPANY,
    EMPTY_MEMBER,
    CompanyState,
    MemberState,
    company_exists,
    company_of_command,
    company_of_group_call,
    company_properties,
    company_row,
    domain_of,
    join_companies,
    join_members,
    member_row,
    membership_changes,
    membership_of_command,
    membership_of_group_call,
)
from projections.directory import Directory
from projections.profiles import PERSONS
from projections.rows import TableSpec
from schemas.companies import CompanyCommand
from schemas.events import EnrichedEvent
from schemas.identity import PersonMerge, person_id_for
from schemas.profile_changes import ProfileChange
from schemas.user_commands import UserCommand

Pair = tuple[str, str]  # (company id, person id)
Insert = Callable[[TableSpec, list[list]], None]
_PERSON = {name: index for index, name in enumerate(PERSONS.column_names)}


@dataclass
class CompanyChanges:
    """What one batch says about companies."""

    group_calls: list[EnrichedEvent] = field(default_factory=list)
    company_writes: list[EnrichedEvent] = field(default_factory=list)  # group calls of deleted users: traits only
    commands: list[CompanyCommand] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.group_calls or self.company_writes or self.commands)


@dataclass
class _Person:
    company_domain: str
    first_seen_ms: int
    alive: bool


class CompaniesProjection:
    def __init__(self, client: Client, database: str, derive_by_domain: bool = False, sources: list[str] | None = None):
        """`derive_by_domain`: every user with a company domain is linked; else `sources`: only the users who
        sent through one of these sources."""
        self.client = client
        self.db = database
        self.sources = None if derive_by_domain or not sources else sorted(sources)
        self.derive_by_domain = derive_by_domain or bool(sources)
        self.any_companies = bool(self._rows(f"SELECT 1 FROM {database}.companies LIMIT 1", {}))

    def _rows(self, sql: str, parameters: dict) -> list[tuple]:
        return self.client.query(sql, parameters=parameters).result_rows

    # -- the batch ----------------------------------------------------------------------------------------

    def project(
        self,
        changes: CompanyChanges,
        person_rows: list[list],
        merges: Iterable[PersonMerge],
        removals: Iterable[UserCommand],
        overrides: dict[str, str],
        directory: Directory,
        insert: Insert,
        publish: Callable[[list[ProfileChange]], None] | None = None,
    ) -> None:
        """`publish`: given the company_joined / company_left changes before the memberships are written (a
        crash in between publishes them again, with the same ids)."""
        merges, removals = list(merges), list(removals)
        if not changes and not self.any_companies:
            return  # no company was ever written: no membership to keep up
        company_writes, member_writes = self._writes(changes, overrides, directory)
        moved, emptied = self._merged_memberships(merges)
        for pair, state in moved.items():
            member_writes[pair] = join_members(member_writes.get(pair, EMPTY_MEMBER), state)
        companies = self._load_companies(set(company_writes) | {c for c, _ in member_writes})
        before = {c: (company_exists(s), domain_of(company_properties(s))) for c, s in companies.items()}
        for company_id, delta in company_writes.items():
            companies[company_id] = join_companies(companies[company_id], delta)
        changed = {c for c in company_writes if before[c] != (company_exists(companies[c]), domain_of(company_properties(companies[c])))}

        pairs = set(member_writes) | set(emptied)
        # A company deleted (or back): every membership of it is rewritten under its delete mark.
        pairs |= set(self._pairs_of_companies({c for c in changed if companies[c].deleted is not None}))
        persons = {row[_PERSON["person_id"]]: _person_of_row(row) for row in person_rows}
        if self.derive_by_domain:
            pairs |= self._derived_candidates(persons, companies, changed)
        members = self._load_members(pairs)
        for pair, delta in member_writes.items():
            members[pair] = join_members(members.get(pair, EMPTY_MEMBER), delta)
        missing = {c for c, _ in pairs} - set(companies)
        companies.update(self._load_companies(missing))
        if self.derive_by_domain:
            persons.update(self._load_persons({p for _, p in pairs} - set(persons)))

        version = time.time_ns()
        rows = []
        qualified = self._from_sources({p for _, p in pairs}) if self.derive_by_domain and self.sources is not None else None
        for company_id, person_id in sorted(pairs):
            company = companies[company_id]
            person = persons.get(person_id)
            derived = bool(
                self.derive_by_domain
                and person is not None
                and person.alive
                and person.company_domain
                and company_exists(company)
                and person.company_domain == domain_of(company_properties(company))
                and (qualified is None or person_id in qualified)
            )
            state = EMPTY_MEMBER if (company_id, person_id) in emptied else members.get((company_id, person_id), EMPTY_MEMBER)
            rows.append(member_row(company_id, person_id, state, company.deleted, derived, version, person.first_seen_ms if derived else 0))
        if publish is not None and rows:
            changes = membership_changes(self._active(pairs), rows, version // 1_000_000)
            publish([c for c in changes if not directory.is_deleted(c.person_id) and (c.subject, c.person_id) not in emptied])
        insert(COMPANY_MEMBERS, rows)

        recount = set(companies) & ({c for c, _ in pairs} | set(company_writes))
        recount |= self._companies_of_persons(set(persons) - {p for _, p in pairs}) if self.any_companies else set()
        for command in removals:
            recount |= self._remove_memberships(command.person_id)
        companies.update(self._load_companies(recount - set(companies)))
        counts = self._counts(recount)
        insert(
            COMPANIES,
            [company_row(c, companies[c], *counts.get(c, (0, 0)), version) for c in sorted(recount) if companies[c] is not EMPTY_COMPANY],
        )
        self.any_companies = self.any_companies or bool(recount)

    # -- steps ----------------------------------------------------------------------------------------------

    @staticmethod
    def _writes(
        changes: CompanyChanges, overrides: dict[str, str], directory: Directory
    ) -> tuple[dict[str, CompanyState], dict[Pair, MemberState]]:
        """The batch's writes per company and per membership (the live person of each, as persons.py finds it)."""
        companies: dict[str, CompanyState] = defaultdict(lambda: EMPTY_COMPANY)
        members: dict[Pair, MemberState] = defaultdict(lambda: EMPTY_MEMBER)
        for event in changes.company_writes:
            companies[event.group_id or ""] = join_companies(companies[event.group_id or ""], company_of_group_call(event))
        for event in changes.group_calls:
            company_id = event.group_id or ""
            companies[company_id] = join_companies(companies[company_id], company_of_group_call(event))
            person = overrides.get(event.person_id or "", event.person_id) or person_id_for(event.distinct_id)
            if directory.is_deleted(person):  # received after the delete: tracking's fresh person
                person = person_id_for(event.distinct_id)
            members[(company_id, person)] = join_members(members[(company_id, person)], membership_of_group_call(event))
        for command in changes.commands:
            if command.kind in ("upsert", "delete"):
                companies[command.company_id] = join_companies(companies[command.company_id], company_of_command(command))
                continue
            person = overrides.get(command.person_id or "", command.person_id)
            if not person or directory.is_deleted(person):
                continue  # a membership of a user deleted since: never kept, live or replayed
            pair = (command.company_id, person)
            members[pair] = join_members(members[pair], membership_of_command(command))
        return dict(companies), dict(members)

    def _merged_memberships(self, merges: list[PersonMerge]) -> tuple[dict[Pair, MemberState], set[Pair]]:
        """Memberships of absorbed persons move to the survivor: (survivor pairs and their states, emptied pairs)."""
        if not merges:
            return {}, set()
        into = {m.from_person: m.into_person for m in merges}
        found = self._rows(
            f"SELECT company_id, person_id, argMax(_state, version) FROM {self.db}.company_members "
            "WHERE person_id IN {ids:Array(String)} GROUP BY company_id, person_id",
            {"ids": sorted(into)},
        )
        moved: dict[Pair, MemberState] = {}
        for company_id, person_id, state in found:
            pair = (company_id, into[person_id])
            moved[pair] = join_members(moved.get(pair, EMPTY_MEMBER), MemberState.from_json(state))
        return moved, {(company_id, person_id) for company_id, person_id, _ in found}

    def _derived_candidates(self, persons: dict[str, _Person], companies: dict[str, CompanyState], changed: set[str]) -> set[Pair]:
        """Pairs whose derived link may have appeared or gone: the batch's persons against the companies of their
        domain, the changed companies against the persons of theirs, and every derived link of either."""
        domains = {p.company_domain for p in persons.values() if p.company_domain}
        pairs: set[Pair] = set()
        if domains:
            by_domain = self._rows(
                f"SELECT company_id, domain FROM {self.db}.companies FINAL WHERE domain IN {{d:Array(String)}}", {"d": sorted(domains)}
            )
            by_domain += [(c, domain_of(company_properties(s))) for c, s in companies.items()]
            of_domain: dict[str, set[str]] = defaultdict(set)
            for company_id, domain in by_domain:
                of_domain[domain].add(company_id)
            pairs |= {(c, p) for p, person in persons.items() for c in of_domain.get(person.company_domain, ())}
        company_domains = {d for c in changed if (d := domain_of(company_properties(companies[c])))}
        if company_domains:
            found = self._rows(
                f"SELECT person_id, company_domain FROM {self.db}.persons FINAL WHERE company_domain IN {{d:Array(String)}}",
                {"d": sorted(company_domains)},
            )
            pairs |= {(c, p) for p, domain in found for c in changed if domain_of(company_properties(companies[c])) == domain}
        if persons or changed:
            pairs |= set(
                self._rows(
                    f"SELECT company_id, person_id FROM {self.db}.company_members FINAL WHERE derived "
                    "AND (person_id IN {p:Array(String)} OR company_id IN {c:Array(String)})",
                    {"p": sorted(persons), "c": sorted(changed)},
                )
            )
        return pairs

    def _pairs_of_companies(self, company_ids: set[str]) -> list[Pair]:
        if not company_ids:
            return []
        return self._rows(
            f"SELECT DISTINCT company_id, person_id FROM {self.db}.company_members WHERE company_id IN {{c:Array(String)}}",
            {"c": sorted(company_ids)},
        )

    def _companies_of_persons(self, person_ids: set[str]) -> set[str]:
        if not person_ids:
            return set()
        return {
            c
            for (c,) in self._rows(
                f"SELECT DISTINCT company_id FROM {self.db}.company_members FINAL WHERE person_id IN {{p:Array(String)}} AND is_active",
                {"p": sorted(person_ids)},
            )
        }

    def _remove_memberships(self, person_id: str) -> set[str]:
        """A deleted or erased user leaves every company (the companies stay); returns those companies."""
        companies = {
            c
            for (c,) in self._rows(
                f"SELECT DISTINCT company_id FROM {self.db}.company_members WHERE person_id = {{p:String}}", {"p": person_id}
            )
        }
        if companies:
            self.client.command(f"DELETE FROM {self.db}.company_members WHERE person_id = {{p:String}}", parameters={"p": person_id})
        return companies

    def _load_companies(self, company_ids: set[str]) -> dict[str, CompanyState]:
        """The latest state of each company, deleted ones included (their delete mark must keep holding)."""
        states: dict[str, CompanyState] = dict.fromkeys(company_ids, EMPTY_COMPANY)
        if company_ids:
            for company_id, state in self._rows(
                f"SELECT company_id, argMax(_state, version) FROM {self.db}.companies WHERE company_id IN {{c:Array(String)}} GROUP BY company_id",
                {"c": sorted(company_ids)},
            ):
                states[company_id] = CompanyState.from_json(state)
        return states

    def _load_members(self, pairs: set[Pair]) -> dict[Pair, MemberState]:
        if not pairs:
            return {}
        found = self._rows(
            f"SELECT company_id, person_id, argMax(_state, version) FROM {self.db}.company_members "
            "WHERE company_id IN {c:Array(String)} AND person_id IN {p:Array(String)} GROUP BY company_id, person_id",
            {"c": sorted({c for c, _ in pairs}), "p": sorted({p for _, p in pairs})},
        )
        return {(c, p): MemberState.from_json(state) for c, p, state in found if (c, p) in pairs}

    def _from_sources(self, person_ids: set[str]) -> set[str]:
        """The persons who sent at least one event through a source that links by domain."""
        if not person_ids:
            return set()
        found = self._rows(
            f"SELECT DISTINCT person_id FROM {self.db}.person_distinct_ids FINAL WHERE person_id IN {{p:Array(String)}} "
            f"AND distinct_id IN (SELECT distinct_id FROM {self.db}.events WHERE source_id IN {{s:Array(String)}} "
            f"AND distinct_id IN (SELECT distinct_id FROM {self.db}.person_distinct_ids FINAL WHERE person_id IN {{p:Array(String)}}))",
            {"p": sorted(person_ids), "s": self.sources},
        )
        return {p for (p,) in found}

    def _active(self, pairs: set[Pair]) -> set[Pair]:
        """The pairs whose membership is active now, as `company_members` has it."""
        found = self._rows(
            f"SELECT company_id, person_id FROM {self.db}.company_members FINAL "
            "WHERE company_id IN {c:Array(String)} AND person_id IN {p:Array(String)} AND is_active",
            {"c": sorted({c for c, _ in pairs}), "p": sorted({p for _, p in pairs})},
        )
        return {(c, p) for c, p in found if (c, p) in pairs}

    def _load_persons(self, person_ids: set[str]) -> dict[str, _Person]:
        if not person_ids:
            return {}
        found = self._rows(
            f"SELECT person_id, company_domain, toUnixTimestamp64Milli(first_seen) FROM {self.db}.persons FINAL "
            "WHERE person_id IN {p:Array(String)}",
            {"p": sorted(person_ids)},
        )
        return {p: _Person(domain, int(first), True) for p, domain, first in found}

    def _counts(self, company_ids: set[str]) -> dict[str, tuple[int, int]]:
        """Active members and their latest last_seen (ms) per company."""
        if not company_ids:
            return {}
        found = self._rows(
            f"SELECT m.company_id, count(), max(toUnixTimestamp64Milli(p.last_seen)) "
            f"FROM (SELECT company_id, person_id FROM {self.db}.company_members FINAL WHERE company_id IN {{c:Array(String)}} AND is_active) AS m "
            f"LEFT JOIN (SELECT person_id, last_seen FROM {self.db}.persons FINAL WHERE person_id IN "
            f"(SELECT person_id FROM {self.db}.company_members FINAL WHERE company_id IN {{c:Array(String)}} AND is_active)) AS p "
            "ON m.person_id = p.person_id GROUP BY m.company_id",
            {"c": sorted(company_ids)},
        )
        return {c: (int(n), int(last or 0)) for c, n, last in found}


def _person_of_row(row: list) -> _Person:
    first_seen = row[_PERSON["first_seen"]]
    first_ms = first_seen if isinstance(first_seen, int) else int(first_seen.timestamp() * 1000)
    return _Person(row[_PERSON["company_domain"]], first_ms, not row[_PERSON["is_deleted"]])
