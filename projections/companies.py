"""Companies and memberships, folded from group calls and company commands. Pure: no I/O.

Rules (SCHEMA.md copies them):

- A `group` call (groupId + traits) writes its traits to the company `groupId` ($set semantics, as for
  profiles: per property the latest write wins, stamped (event time in ms, message id)) and makes the
  call's person a member from the call's time. A company command's writes are stamped (command time,
  command id) and compete with the traits by that stamp. A write of None (or an `unset`) removes a property.
- Every part of a state keeps a minimum or a maximum by stamp, so folding is a join: any order and any
  redelivery of the same calls and commands give the same state (replay equals live).
- delete at stamp D: properties and memberships whose latest write is at or before D are gone, and the
  company too unless something was written after D (a later group call starts it afresh).
- Membership of (company, person): `started_at` is the earliest start any write gave; whether it is active
  is the latest of the writes that join (a group call, member_add) or end it (member_end, whose value is the
  end time); role and primary flag are the latest given. The first write names its source (group or api).
- Derived membership: a person whose email domain is a company domain (profiles' `company_domain`, free mail
  excluded) is a member of the companies with that domain, flagged `derived`, unless there is an explicit
  membership (which then decides, ended or not). Derived links are recomputed from the current person and
  company, so they too do not depend on the order things arrived in.
- A company's domain: its `domain` property, else the host of its `website` (lower-cased, without "www.").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from projections.profiles import REMOVED, Mark, _earlier, _later, _per_key
from projections.rows import TableSpec, epoch_ms
from schemas.companies import CompanyCommand
from schemas.events import EnrichedEvent
from schemas.profile_changes import ProfileChange, change_id_of


def _marks_to_json(marks: Mapping[str, Mark]) -> dict[str, list]:
    return {key: [m.at, m.message_id] if m.value is REMOVED else list(m) for key, m in marks.items()}


def _marks_from_json(stored: Mapping[str, list]) -> dict[str, Mark]:
    return {key: Mark(*m) if len(m) == 3 else Mark(*m, REMOVED) for key, m in stored.items()}


def _mark(stored: list | None) -> Mark | None:
    return Mark(*stored) if stored else None


def _after(mark: Mark | None, deleted: Mark | None) -> bool:
    """Whether a write survives the company's latest delete."""
    return mark is not None and (deleted is None or mark[:2] > deleted[:2])


@dataclass(frozen=True)
class CompanyState:
    props: Mapping[str, Mark] = field(default_factory=dict)  # latest write per property (REMOVED: unset)
    first: Mark | None = None  # earliest write of any kind
    latest: Mark | None = None  # latest write of any kind
    deleted: Mark | None = None  # latest delete

    def to_json(self) -> str:
        state = {
            "props": _marks_to_json(self.props),
            "first": self.first and list(self.first),
            "latest": self.latest and list(self.latest),
            "deleted": self.deleted and list(self.deleted),
        }
        return orjson.dumps({k: v for k, v in state.items() if v}, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, s: str) -> CompanyState:
        state = orjson.loads(s or "{}")
        return cls(
            _marks_from_json(state.get("props", {})), _mark(state.get("first")), _mark(state.get("latest")), _mark(state.get("deleted"))
        )


def join_companies(a: CompanyState, b: CompanyState) -> CompanyState:
    return CompanyState(
        props=_per_key(a.props, b.props, _later),
        first=_earlier(a.first, b.first),
        latest=_later(a.latest, b.latest),
        deleted=_later(a.deleted, b.deleted),
    )


@dataclass(frozen=True)
class MemberState:
    started: int | None = None  # earliest start (ms)
    active: Mark | None = None  # latest join (value None) or end (value: the end, ms)
    role: Mark | None = None
    primary: Mark | None = None
    source: Mark | None = None  # the earliest write; value "group" or "api"

    def to_json(self) -> str:
        state = {
            "started": self.started,
            **{
                name: mark and list(mark)
                for name, mark in (("active", self.active), ("role", self.role), ("primary", self.primary), ("source", self.source))
            },
        }
        return orjson.dumps({k: v for k, v in state.items() if v is not None}, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, s: str) -> MemberState:
        state = orjson.loads(s or "{}")
        return cls(state.get("started"), *(_mark(state.get(name)) for name in ("active", "role", "primary", "source")))


def join_members(a: MemberState, b: MemberState) -> MemberState:
    started = b.started if a.started is None else a.started if b.started is None else min(a.started, b.started)
    return MemberState(
        started, _later(a.active, b.active), _later(a.role, b.role), _later(a.primary, b.primary), _earlier(a.source, b.source)
    )


EMPTY_COMPANY = CompanyState()
EMPTY_MEMBER = MemberState()


# -- what one call or command writes ---------------------------------------------------------------------


def is_group_call(event: EnrichedEvent) -> bool:
    return event.type == "group" and bool(event.group_id)


def company_of_group_call(event: EnrichedEvent) -> CompanyState:
    at, message_id = epoch_ms(event.timestamp), event.message_id
    stamp = Mark(at, message_id)
    traits = event.traits if isinstance(event.traits, dict) else {}
    props = {key: Mark(at, message_id, REMOVED if value is None else value) for key, value in traits.items()}
    return CompanyState(props=props, first=stamp, latest=stamp)


def membership_of_group_call(event: EnrichedEvent) -> MemberState:
    at, message_id = epoch_ms(event.timestamp), event.message_id
    return MemberState(started=at, active=Mark(at, message_id, None), source=Mark(at, message_id, "group"))


def company_of_command(command: CompanyCommand) -> CompanyState:
    at, command_id = epoch_ms(command.at), command.command_id
    stamp = Mark(at, command_id)
    if command.kind == "delete":
        return CompanyState(deleted=stamp)
    props = {key: Mark(at, command_id, REMOVED if value is None else value) for key, value in command.set.items()}
    props.update((key, Mark(at, command_id, REMOVED)) for key in command.unset)
    return CompanyState(props=props, first=stamp, latest=stamp)


def membership_of_command(command: CompanyCommand) -> MemberState:
    at, command_id = epoch_ms(command.at), command.command_id
    if command.kind == "member_end":
        ended = epoch_ms(command.ended_at) if command.ended_at else at
        return MemberState(active=Mark(at, command_id, ended), source=Mark(at, command_id, "api"))
    started = epoch_ms(command.started_at) if command.started_at else at
    ended = epoch_ms(command.ended_at) if command.ended_at else None
    return MemberState(
        started=started,
        active=Mark(at, command_id, ended),
        role=None if command.role is None else Mark(at, command_id, command.role),
        primary=None if command.primary is None else Mark(at, command_id, command.primary),
        source=Mark(at, command_id, "api"),
    )


# -- what a state shows -----------------------------------------------------------------------------------


def company_exists(state: CompanyState) -> bool:
    return _after(state.latest, state.deleted)


def company_properties(state: CompanyState) -> dict[str, Any]:
    """The resolved properties: the latest write per key, if it came after the latest delete."""
    return {key: mark.value for key, mark in state.props.items() if mark.value is not REMOVED and _after(mark, state.deleted)}


def domain_of(properties: Mapping[str, Any]) -> str:
    """The company's domain: `domain`, else the host of `website`; lower-cased, without "www."; '' if none."""
    domain = properties.get("domain")
    if not isinstance(domain, str) or not domain.strip():
        website = properties.get("website")
        if not isinstance(website, str) or not website.strip():
            return ""
        website = website.strip()
        try:
            domain = urlsplit(website if "//" in website else f"//{website}").hostname or ""
        except ValueError:
            return ""
    domain = domain.strip().lower().rstrip(".")
    return domain.removeprefix("www.")


def membership_present(state: MemberState, company_deleted: Mark | None) -> bool:
    """An explicit membership that survived the company's latest delete (active or ended)."""
    return _after(state.active, company_deleted)


# -- rows ---------------------------------------------------------------------------------------------------

COMPANIES = TableSpec(
    "companies",
    (
        ("company_id", "String"),
        ("name", "String"),
        ("domain", "String"),
        ("properties", "String"),
        ("member_count", "UInt32"),
        ("last_seen", "DateTime64(3, 'UTC')"),
        ("created_at", "DateTime64(3, 'UTC')"),
        ("updated_at", "DateTime64(3, 'UTC')"),
        ("_state", "String"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

COMPANY_MEMBERS = TableSpec(
    "company_members",
    (
        ("company_id", "String"),
        ("person_id", "String"),
        ("role", "String"),
        ("is_primary", "Bool"),
        ("started_at", "DateTime64(3, 'UTC')"),
        ("ended_at", "Nullable(DateTime64(3, 'UTC'))"),
        ("is_active", "Bool"),
        ("derived", "Bool"),
        ("source", "LowCardinality(String)"),
        ("_state", "String"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)

COMPANY_COMMANDS = TableSpec(
    "company_commands",
    (
        ("command_id", "String"),
        ("kind", "LowCardinality(String)"),
        ("company_id", "String"),
        ("person_id", "String"),
        ("at", "DateTime64(3, 'UTC')"),
        ("applied_at", "DateTime64(3, 'UTC')"),
    ),
)


def company_row(company_id: str, state: CompanyState, member_count: int, last_seen_ms: int, version: int) -> list:
    """One row of {db}.companies, in COMPANIES' column order; a deleted company's row deletes it."""
    properties = company_properties(state)
    name = properties.get("name")
    return [
        company_id,
        name if isinstance(name, str) else "",
        domain_of(properties),
        orjson.dumps(properties, option=orjson.OPT_SORT_KEYS, default=str).decode(),
        member_count,
        last_seen_ms,
        state.first.at if state.first else 0,
        state.latest.at if state.latest else 0,
        state.to_json(),
        version,
        int(not company_exists(state)),
    ]


def member_row(
    company_id: str,
    person_id: str,
    state: MemberState,
    company_deleted: Mark | None,
    derived: bool,
    version: int,
    derived_since_ms: int = 0,
) -> list:
    """One row of {db}.company_members. An explicit membership decides; without one, a derived link (by email
    domain) is an active membership with source 'domain'; with neither the row deletes the pair."""
    explicit = membership_present(state, company_deleted)
    if explicit:
        ended = state.active.value if state.active else None
        return [
            company_id,
            person_id,
            state.role.value if state.role and isinstance(state.role.value, str) else "",
            bool(state.primary.value) if state.primary else False,
            state.started or 0,
            ended,
            ended is None,
            False,
            state.source.value if state.source else "api",
            state.to_json(),
            version,
            0,
        ]
    return [
        company_id,
        person_id,
        "",
        False,
        derived_since_ms,
        None,
        derived,
        derived,
        "domain",
        state.to_json(),
        version,
        int(not derived),
    ]


def company_command_row(command: CompanyCommand, applied_at_ms: int) -> list:
    return [command.command_id, command.kind, command.company_id, command.person_id or "", epoch_ms(command.at), applied_at_ms]


def _member_active(row: list) -> bool:
    return bool(row[6]) and not row[11]


def membership_changes(active_before: set[tuple[str, str]], rows: Iterable[list], now_ms: int) -> list[ProfileChange]:
    """company_joined / company_left for each membership row (COMPANY_MEMBERS' order) whose being active differs
    from before. The id comes from what decided it (the membership's latest join or end write; for a derived
    link, the domain and since when), so the same transition always has the same id."""
    changes = []
    for row in rows:
        company_id, person_id = row[0], row[1]
        active = _member_active(row)
        if active == ((company_id, person_id) in active_before):
            continue
        state = MemberState.from_json(row[9])
        cause = list(state.active[:2]) if state.active and not row[7] else ["domain", row[4]]
        kind = "company_joined" if active else "company_left"
        at_ms = (row[4] if active else row[5]) or (state.active.at if state.active else now_ms)
        changes.append(
            ProfileChange(
                change_id=change_id_of(kind, company_id, person_id, *cause),
                person_id=person_id,
                kind=kind,
                at=datetime.fromtimestamp(at_ms / 1000, UTC),
                source="domain" if row[7] else f"company:{row[8]}",
                subject=company_id,
                detail={"role": row[2], "primary": bool(row[3]), "derived": bool(row[7])},
            )
        )
    return changes
