"""Companies as the API shows them: bodies, the list's query, and reads from `companies` and `company_members`.

The list pages with a keyset cursor (sort value, company id), as the people list does (api/user_query.py);
its SQL is fixed fragments, every value a server-side parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from api.errors import ApiError, FieldError
from api.keyset import Keyset
from api.reads import Reader
from schemas.companies import COMPANY_ID_MAX
from schemas.objects import out_of_range
from schemas.properties import NAME_PATTERN

MAX_PROPERTIES = 200
_NAME = re.compile(NAME_PATTERN)
CompanyId = Annotated[str, Field(min_length=1, max_length=COMPANY_ID_MAX, pattern=r"^[^/\x00-\x1f]+$")]


class CompanyCreate(BaseModel):
    """A company: its id (a group call's groupId; generated when absent), name, domain and any other property."""

    model_config = ConfigDict(extra="forbid")

    company_id: CompanyId | None = None
    name: Annotated[str, Field(max_length=1000)] | None = None
    domain: Annotated[str, Field(max_length=253)] | None = None
    properties: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES)

    def writes(self) -> dict[str, Any]:
        fields = {name: value for name in ("name", "domain") if (value := getattr(self, name)) is not None}
        return {**self.properties, **fields}


class CompanyPatch(BaseModel):
    """`set` writes properties (None removes one), `unset` removes them; both compete by time with group calls' traits."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES)
    unset: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=MAX_PROPERTIES)


class MemberAdd(BaseModel):
    """Make a user a member (or change the role or primary flag of their membership)."""

    model_config = ConfigDict(extra="forbid")

    user: Annotated[
        str, Field(min_length=1, max_length=1024, description="a user ref: person id, user_id:<id>, email:<address>, distinct_id:<id>")
    ]
    role: Annotated[str, Field(max_length=200)] | None = None
    primary: bool | None = None
    started_at: datetime | None = None


class MemberEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ended_at: datetime | None = None


COMPANY_COLUMNS = "company_id, name, domain, properties, member_count, last_seen, created_at, updated_at"
SORTS = {
    "name": "String",
    "last_seen": "DateTime64(3, 'UTC')",
    "member_count": "UInt32",
    "created_at": "DateTime64(3, 'UTC')",
    "company_id": "String",
}


@dataclass(frozen=True)
class CompanyQuery:
    q: str | None = None
    domain: str | None = None
    sort: str = "name"
    limit: int = 50
    cursor: str | None = None

    @property
    def column(self) -> str:
        return self.sort.removeprefix("-")

    def check(self) -> CompanyQuery:
        if self.column not in SORTS:
            raise ApiError.of(422, "sort", "one_of", f"sort by one of {', '.join(SORTS)} (prefix '-' for descending)")
        return self

    def sql(self) -> tuple[str, dict[str, Any]]:
        conditions, parameters = ["1"], {"limit": self.limit + 1}
        if self.q:
            conditions.append(
                "(positionCaseInsensitiveUTF8(name, {q:String}) > 0 OR startsWith(domain, lower({q:String})) "
                "OR startsWith(company_id, {q:String}))"
            )
            parameters["q"] = self.q
        if self.domain:
            conditions.append("domain = lower({domain:String})")
            parameters["domain"] = self.domain
        keyset = self.keyset()
        if self.cursor:
            conditions.append(keyset.after(self.cursor, parameters))
        return (
            f"SELECT {COMPANY_COLUMNS} FROM {{db}}.companies FINAL WHERE {' AND '.join(conditions)} "
            f"ORDER BY {keyset.order_by()} LIMIT {{limit:UInt32}}"
        ), parameters

    def keyset(self) -> Keyset:
        return Keyset(self.column, SORTS[self.column], "company_id", self.sort.startswith("-"))

    def next_cursor(self, last_row: dict[str, Any]) -> str:
        return self.keyset().next_cursor(last_row)


def company_json(row: dict[str, Any]) -> dict[str, Any]:
    company = dict(row)
    company["properties"] = orjson.loads(row["properties"] or "{}")
    return company


MEMBER_COLUMNS = (
    "m.company_id AS company_id, m.person_id AS person_id, m.role AS role, m.is_primary AS is_primary, "
    "m.started_at AS started_at, m.ended_at AS ended_at, m.is_active AS is_active, m.derived AS derived, m.source AS source"
)


class Companies:
    def __init__(self, reader: Reader):
        self.reader = reader

    async def get(self, company_id: str) -> dict[str, Any] | None:
        rows = await self.reader.rows(
            f"SELECT {COMPANY_COLUMNS} FROM {{db}}.companies FINAL WHERE company_id = {{c:String}}", {"c": company_id}
        )
        return company_json(rows[0]) if rows else None

    async def require(self, company_id: str) -> dict[str, Any]:
        company = await self.get(company_id)
        if company is None:
            raise ApiError.of(404, "company_id", "exists", f"no company {company_id!r}")
        return company

    async def search(self, query: CompanyQuery) -> tuple[list[dict[str, Any]], str | None]:
        sql, parameters = query.sql()
        rows = await self.reader.rows(sql, parameters)
        page = rows[: query.limit]
        return [company_json(r) for r in page], query.next_cursor(page[-1]) if len(rows) > query.limit else None

    async def members(self, company_id: str, include_ended: bool, limit: int, after: str | None) -> list[dict[str, Any]]:
        """The company's members with their name and email, by person id (keyset: after a person id)."""
        conditions = ["m.company_id = {c:String}"]
        parameters: dict[str, Any] = {"c": company_id, "limit": limit + 1}
        if not include_ended:
            conditions.append("m.is_active")
        if after is not None:
            conditions.append("m.person_id > {after:String}")
            parameters["after"] = after
        return await self.reader.rows(
            f"SELECT {MEMBER_COLUMNS}, p.email AS email, p.name AS name, p.last_seen AS last_seen "
            "FROM {db}.company_members AS m FINAL LEFT JOIN (SELECT person_id, email, name, last_seen FROM {db}.persons FINAL "
            "WHERE person_id IN (SELECT person_id FROM {db}.company_members FINAL WHERE company_id = {c:String})) AS p "
            f"ON m.person_id = p.person_id WHERE {' AND '.join(conditions)} ORDER BY m.person_id LIMIT {{limit:UInt32}}",
            parameters,
        )

    async def membership(self, company_id: str, person_id: str) -> dict[str, Any] | None:
        rows = await self.reader.rows(
            f"SELECT {MEMBER_COLUMNS} FROM {{db}}.company_members AS m FINAL WHERE m.company_id = {{c:String}} AND m.person_id = {{p:String}}",
            {"c": company_id, "p": person_id},
        )
        return rows[0] if rows else None

    async def of_person(self, person_id: str, include_ended: bool) -> list[dict[str, Any]]:
        """A user's companies with their membership, primary first, then by name."""
        active = "" if include_ended else " AND m.is_active"
        return await self.reader.rows(
            f"SELECT {MEMBER_COLUMNS}, c.name AS name, c.domain AS domain, c.member_count AS member_count, c.last_seen AS company_last_seen "
            "FROM {db}.company_members AS m FINAL INNER JOIN (SELECT company_id, name, domain, member_count, last_seen FROM {db}.companies FINAL "
            "WHERE company_id IN (SELECT company_id FROM {db}.company_members FINAL WHERE person_id = {p:String})) AS c "
            f"ON m.company_id = c.company_id WHERE m.person_id = {{p:String}}{active} "
            "ORDER BY m.is_primary DESC, m.is_active DESC, c.name, m.company_id LIMIT 1000",
            {"p": person_id},
        )

    async def applied(self, command_id: str) -> bool:
        rows = await self.reader.rows(
            "SELECT 1 AS applied FROM {db}.company_commands WHERE command_id = {c:String} LIMIT 1", {"c": command_id}
        )
        return bool(rows)


def check_writes(writes: dict[str, Any], unset: list[str] = ()) -> None:
    """Property names are plain (as user property names are); the name and domain, when written, are text."""
    errors = [
        FieldError(f"properties.{name}", "name", "a property name is 1-100 letters, digits, _ . - and starts with a letter or _")
        for name in [*writes, *unset]
        if not _NAME.match(name)
    ]
    errors += [FieldError(f"properties.{name}", "type", "integers must fit in 64 bits") for name, v in writes.items() if out_of_range(v)]
    for name in ("name", "domain", "website"):
        if name in writes and writes[name] is not None and not isinstance(writes[name], str):
            errors.append(FieldError(f"properties.{name}", "type", f"{name} is text"))
    if errors:
        raise ApiError(422, errors)
