"""/api/v1/companies: create, read, list and search, update and delete companies; add, end and list memberships;
a user's companies at /api/v1/users/{ref}/companies.

Each write, top to bottom: validate the body (422 naming the field and rule) → resolve the company (404) and the
user (404) → one command on `company-commands` (answered once Kafka acknowledged it, with the command id) → with
?wait=true, until the projector applied it (`company_commands`) and the result is readable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.bodies import StrictJSONRoute
from api.commands import Record
from api.companies import Companies, CompanyCreate, CompanyPatch, CompanyQuery, MemberAdd, MemberEnd, check_writes
from api.errors import ApiError, JSONAnswer
from api.routers.users import Accepted, IdempotencyKey, Wait, _answer, _idempotent, _people, _send, _wait_for
from api.user_model import parse_ref
from schemas.companies import CompanyCommand

router = APIRouter(tags=["companies"], route_class=StrictJSONRoute)
user_companies_router = APIRouter(tags=["users"], route_class=StrictJSONRoute)


def _companies(request: Request) -> Companies:
    return Companies(request.app.state.reader)


async def _check_properties(request: Request, writes: dict[str, Any], partial: bool, unset: list[str] = ()) -> None:
    """Names and the built-in shapes (api/companies.py), then the company property definitions: 422 per property."""
    check_writes(writes, unset)
    await request.app.state.definitions.ready()
    if errors := request.app.state.company_property_validator(writes, partial=partial, unset=unset):
        raise ApiError(422, list(errors))


def _record(request: Request, command: CompanyCommand) -> Record:
    topic = request.app.state.settings.topics.company_commands.name
    return Record(topic, command.company_id, command.model_dump_json().encode())


async def _publish(request: Request, command: CompanyCommand, wait: bool, key: str | None, raw: bytes, readable) -> JSONAnswer:
    """Send the command; with ?wait=true answer 200 once it is applied and `readable()` gives what to show."""
    await _send(request, [_record(request, command)])
    answer: dict[str, Any] = {"command_id": command.command_id, "company_id": command.company_id, "readable": False}
    if command.person_id:
        answer["person_id"] = command.person_id
    if wait:
        companies = _companies(request)
        shown = await _wait_for(request, lambda: _applied_then(companies, command.command_id, readable))
        if shown is not None:
            answer.update(readable=True, **shown)
            return _answer(request, command.command_id, raw, key, 200, answer)
    return _answer(request, command.command_id, raw, key, 202, answer)


async def _applied_then(companies: Companies, command_id: str, readable) -> dict[str, Any] | None:
    if not await companies.applied(command_id):
        return None
    return await readable()


# -- companies ------------------------------------------------------------------------------------------------


@router.post("/companies", status_code=202, response_model=Accepted, responses={201: {"model": Accepted}, 409: {}})
async def create_company(request: Request, body: CompanyCreate, wait: Wait = False, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """Create a company. `company_id` is the id group calls use (their groupId); without one, one is generated."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, "POST /companies")
    if replay is not None:
        return replay
    writes = body.writes()
    await _check_properties(request, writes, partial=False)
    companies = _companies(request)
    company_id = body.company_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"footfall:company:{command_id}"))
    if body.company_id and await companies.get(company_id) is not None:
        raise ApiError.of(409, "company_id", "unique", f"company {company_id!r} exists; PATCH it", company_id=company_id)
    command = CompanyCommand(kind="upsert", command_id=command_id, company_id=company_id, at=datetime.now(UTC), set=writes)
    await _send(request, [_record(request, command)])
    answer: dict[str, Any] = {"command_id": command_id, "company_id": company_id, "readable": False}
    if wait:
        shown = await _wait_for(request, lambda: _applied_then(companies, command_id, lambda: companies.get(company_id)))
        if shown is not None:
            answer.update(readable=True, company=shown)
            return _answer(request, command_id, raw, idempotency_key, 201, answer)
    return _answer(request, command_id, raw, idempotency_key, 202, answer)


@router.get("/companies")
async def list_companies(
    request: Request,
    q: Annotated[str | None, Query(max_length=256, description="name (anywhere), domain or company id prefix")] = None,
    domain: Annotated[str | None, Query(max_length=253)] = None,
    sort: Annotated[str, Query(description="name, last_seen, member_count, created_at, company_id; '-' for descending")] = "name",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """List and search companies, a page at a time (`next_cursor`)."""
    query = CompanyQuery(q=q, domain=domain, sort=sort, limit=limit, cursor=cursor).check()
    companies, next_cursor = await _companies(request).search(query)
    return {"companies": companies, "next_cursor": next_cursor}


@router.get("/companies/{company_id}")
async def get_company(request: Request, company_id: str) -> dict[str, Any]:
    """One company: name, domain, properties, active member count, the latest last_seen of its members."""
    return await _companies(request).require(company_id)


@router.patch("/companies/{company_id}", status_code=202, response_model=Accepted)
async def update_company(
    request: Request, company_id: str, body: CompanyPatch, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Set and unset properties (latest write wins per property, group calls' traits included)."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"PATCH /companies/{company_id}")
    if replay is not None:
        return replay
    await _check_properties(request, body.set, partial=True, unset=body.unset)
    companies = _companies(request)
    await companies.require(company_id)
    command = CompanyCommand(
        kind="upsert",
        command_id=command_id,
        company_id=company_id,
        at=datetime.now(UTC),
        set=body.set,
        unset=list(dict.fromkeys(body.unset)),
    )
    return await _publish(request, command, wait, idempotency_key, raw, lambda: _as(companies.get(company_id), "company"))


@router.delete("/companies/{company_id}", status_code=202, response_model=Accepted)
async def delete_company(request: Request, company_id: str, wait: Wait = False, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """Delete a company and its memberships; the users stay. A later group call with its id starts it afresh."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"DELETE /companies/{company_id}")
    if replay is not None:
        return replay
    companies = _companies(request)
    await companies.require(company_id)
    command = CompanyCommand(kind="delete", command_id=command_id, company_id=company_id, at=datetime.now(UTC))
    return await _publish(request, command, wait, idempotency_key, raw, lambda: _gone(companies, company_id))


async def _as(found, name: str) -> dict[str, Any] | None:
    value = await found
    return {name: value} if value is not None else None


async def _gone(companies: Companies, company_id: str) -> dict[str, Any] | None:
    return {"deleted": True} if await companies.get(company_id) is None else None


# -- memberships ------------------------------------------------------------------------------------------------


@router.get("/companies/{company_id}/members")
async def list_members(
    request: Request,
    company_id: str,
    include_ended: Annotated[bool, Query(description="also ended memberships")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """The company's members (explicit and derived by email domain), with role, primary flag, start and end."""
    companies = _companies(request)
    await companies.require(company_id)
    rows = await companies.members(company_id, include_ended, limit, cursor)
    page = rows[:limit]
    return {"company_id": company_id, "members": page, "next_cursor": page[-1]["person_id"] if len(rows) > limit else None}


@router.post("/companies/{company_id}/members", status_code=202, response_model=Accepted)
async def add_member(
    request: Request, company_id: str, body: MemberAdd, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Make a user a member, or change their role or primary flag (a membership that ended starts again)."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"POST /companies/{company_id}/members")
    if replay is not None:
        return replay
    companies = _companies(request)
    await companies.require(company_id)
    person_id = await _people(request).require(parse_ref(body.user), body.user)
    command = CompanyCommand(
        kind="member_add",
        command_id=command_id,
        company_id=company_id,
        at=datetime.now(UTC),
        person_id=person_id,
        role=body.role,
        primary=body.primary,
        started_at=body.started_at,
    )
    return await _publish(
        request, command, wait, idempotency_key, raw, lambda: _as(companies.membership(company_id, person_id), "membership")
    )


@router.post("/companies/{company_id}/members/{ref}/end", status_code=202, response_model=Accepted)
async def end_member(
    request: Request, company_id: str, ref: str, body: MemberEnd | None = None, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """End a membership (now, or at `ended_at`); it stays listed with `include_ended=true`."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"END /companies/{company_id}/members/{ref}")
    if replay is not None:
        return replay
    companies = _companies(request)
    await companies.require(company_id)
    person_id = await _people(request).require(parse_ref(ref), ref)
    if await companies.membership(company_id, person_id) is None:
        raise ApiError.of(404, "ref", "member", f"user {ref!r} is not a member of {company_id!r}")
    command = CompanyCommand(
        kind="member_end",
        command_id=command_id,
        company_id=company_id,
        at=datetime.now(UTC),
        person_id=person_id,
        ended_at=body.ended_at if body else None,
    )
    return await _publish(
        request, command, wait, idempotency_key, raw, lambda: _as(companies.membership(company_id, person_id), "membership")
    )


@user_companies_router.get("/users/{ref}/companies")
async def user_companies(
    request: Request, ref: str, include_ended: Annotated[bool, Query(description="also ended memberships")] = False
) -> dict[str, Any]:
    """The user's companies with their membership (role, primary, start, end, derived), primary first."""
    person_id = await _people(request).require(parse_ref(ref), ref)
    return {"person_id": person_id, "companies": await _companies(request).of_person(person_id, include_ended)}
