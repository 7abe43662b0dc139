"""/api/v1/users: create, read, list, update, tag, disable, delete and erase users; their timelines; bulk edits.

Each write, top to bottom: validate the body (422 naming the field and rule) → resolve the ref (404) →
check identifiers against other users (409 naming the holder) → the commands (api/user_model.py) → Kafka
(answered once acknowledged, with the command id) → with ?wait=true, until the change is readable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.bodies import StrictJSONRoute
from api.commands import Record
from api.definitions import check_unique
from api.errors import ApiError, FieldError, JSONAnswer
from api.groups import Lists, Stages, check_groups
from api.jobs import BulkEdit, Jobs
from api.keyset import clickhouse_time, decode_cursor, encode_cursor
from api.people import People
from api.user_model import (
    Ref,
    UserCreate,
    UserPatch,
    create_records,
    delete_records,
    identifiers_of,
    parse_ref,
    primary_distinct_id,
    update_records,
    validate_create,
    validate_patch,
)
from api.user_query import Kind, ListQuery
from schemas.identity import PERSON_NAMESPACE
from schemas.user_commands import IDENTIFIERS, command_id_for

router = APIRouter(tags=["users"], route_class=StrictJSONRoute)
jobs_router = APIRouter(tags=["jobs"], route_class=StrictJSONRoute)
commands_router = APIRouter(tags=["commands"], route_class=StrictJSONRoute)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=255, description="a retried write with the same key is a no-op")
]
Wait = Annotated[bool, Query(description="answer once the change is readable (bounded by the server's wait timeout)")]


class Accepted(BaseModel):
    """A write Kafka acknowledged: its command id, and the user when ?wait=true saw it readable."""

    model_config = ConfigDict(extra="allow")

    command_id: str
    person_id: str | None = None
    readable: bool = False
    user: dict[str, Any] | None = None


def _state(request: Request):
    return request.app.state


def _people(request: Request) -> People:
    return People(request.app.state.reader)


async def _idempotent(request: Request, key: str | None, scope: str) -> tuple[str, bytes, JSONAnswer | None]:
    """The command id for this write, and the remembered answer when it is a retry."""
    body = await request.body()
    if key is None:
        return str(uuid.uuid4()), body, None
    command_id = command_id_for(key, scope)
    remembered = _state(request).idempotency.lookup(command_id, body)
    if remembered is not None:
        return command_id, body, JSONAnswer(remembered.answer, remembered.status, headers={"Idempotent-Replay": "true"})
    return command_id, body, None


async def _send(request: Request, records: list[Record]) -> None:
    await _state(request).bus.send(records)


async def _applied(request: Request, command_id: str) -> bool:
    rows = await _state(request).reader.rows(
        "SELECT 1 AS applied FROM {db}.user_commands WHERE command_id = {c:String} LIMIT 1", {"c": command_id}
    )
    return bool(rows)


async def _wait_for(request: Request, probe) -> Any:
    """The probe's first truthy answer, or None once the server's wait timeout passed (both counted)."""
    started = time.monotonic()
    deadline = started + _state(request).config.wait_timeout_s
    delay = 0.05
    while True:
        if found := await probe():
            _state(request).metrics.observe_wait(True, time.monotonic() - started)
            return found
        if time.monotonic() >= deadline:
            _state(request).metrics.observe_wait(False, time.monotonic() - started)
            return None
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.5)


def _answer(request: Request, command_id: str, body: bytes, key: str | None, status: int, answer: dict[str, Any]) -> JSONAnswer:
    if key is not None:
        _state(request).idempotency.remember(command_id, body, status, answer)
    return JSONAnswer(answer, status)


async def _check_free(people: People, identifiers: dict[str, Any], person_id: str | None = None) -> None:
    """409 when another user already has one of these identifiers, naming that user."""
    errors = []
    for name in IDENTIFIERS:
        value = identifiers.get(name)
        if not isinstance(value, str) or not value:
            continue
        owner = await people.owner_of(name, value)
        if owner is not None and owner != person_id:
            errors.append(FieldError(name, "unique", f"{name} {value!r} already belongs to user {owner}", {"person_id": owner}))
    if errors:
        raise ApiError(409, errors)


def _validate_custom(request: Request, properties: dict[str, Any], *, partial: bool, unset: list[str] | None = None) -> None:
    """The property definitions' rules (types and constraints: api/definitions.py), when a validator is installed."""
    validator = getattr(_state(request), "property_validator", None)
    if validator is None:
        return
    errors = validator(properties, partial=partial, unset=unset or ())
    if errors:
        raise ApiError(422, list(errors))


# -- create -----------------------------------------------------------------------------------------------


@router.post("/users", status_code=202, response_model=Accepted, responses={201: {"model": Accepted}})
async def create_user(request: Request, body: UserCreate, wait: Wait = False, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """Create a user. At least one identifier (user_id, email, phone, customer_id) is required."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, "POST /users")
    if replay is not None:
        return replay
    properties = validate_create(body)
    _validate_custom(request, properties, partial=False)
    await check_groups(_stages(request), _lists(request), body)
    people = _people(request)
    await _check_free(people, properties)
    await check_unique(_state(request).definitions, _state(request).reader, properties, skip=IDENTIFIERS)
    person_id = str(uuid.uuid5(PERSON_NAMESPACE, f"command:{command_id}"))
    at = datetime.now(UTC)
    await _send(request, create_records(_state(request).settings.topics, properties, body, person_id, command_id, at))
    answer: dict[str, Any] = {"command_id": command_id, "person_id": person_id, "readable": False}
    if wait:
        primary = primary_distinct_id(properties)
        readable = await _wait_for(request, lambda: _created_profile(request, command_id, people, primary, person_id))
        if readable:
            answer.update(readable=True, user=readable)
            return _answer(request, command_id, raw, idempotency_key, 201, answer)
    return _answer(request, command_id, raw, idempotency_key, 202, answer)


async def _created_profile(request: Request, command_id: str, people: People, distinct_id: str, person_id: str) -> dict[str, Any] | None:
    """The new user's profile once it is whole: the projector applied the command, the distinct id maps to the
    new person, and the identity facts (visitor number, identified) arrived. The mapping and the facts come on
    separate topics, so either may land first; each is asked only after the one before it held."""
    if not (await _applied(request, command_id) and await _mapped(people, distinct_id, person_id)):
        return None
    profile = await people.profile(person_id)
    return profile if profile and profile.get("visitor_number") else None


async def _mapped(people: People, distinct_id: str, person_id: str) -> bool:
    return await people.person_id_of(Ref("distinct_id", distinct_id)) == person_id


# -- read -------------------------------------------------------------------------------------------------


@router.get("/users")
async def list_users(
    request: Request,
    q: Annotated[str | None, Query(max_length=256, description="email or name prefix, any identifier or its prefix")] = None,
    status: Annotated[Literal["active", "disabled"] | None, Query()] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[Kind | None, Query(description="identified, anonymous or contact")] = None,
    stage: Annotated[str | None, Query(max_length=64, description="a lifecycle stage id; `none`: no stage set")] = None,
    list: Annotated[str | None, Query(max_length=64, alias="list", description="a list id: its current members")] = None,
    sort: Annotated[
        str, Query(description="last_seen, first_seen, email, name, event_count, session_count, visitor_number; '-' for descending")
    ] = "-last_seen",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """List and search users. Filter on any property with `properties.<name>=<value>` (repeatable names)."""
    properties = {name.removeprefix("properties."): value for name, value in request.query_params.items() if name.startswith("properties.")}
    query = ListQuery(
        q=q, status=status, tag=tag, kind=kind, stage=stage, list=list, properties=properties, sort=sort, limit=limit, cursor=cursor
    ).check()
    if cursor:
        query.cursor_position()
    users, next_cursor = await _people(request).search(query)
    names = await _list_names(request)
    return {"users": [_with_list_names(user, names) for user in users], "next_cursor": next_cursor}


async def _list_names(request: Request) -> dict[str, str]:
    return {list_id: d.name for list_id, d in (await _lists(request).live()).items()}


def _with_list_names(profile: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`lists` as [{id, name}], the lists that still exist."""
    return {**profile, "lists": [{"id": i, "name": names[i]} for i in profile.get("lists", []) if i in names]}


def _stages(request: Request) -> Stages:
    return _state(request).stages


def _lists(request: Request) -> Lists:
    return _state(request).lists


@router.get("/users/{ref}")
async def get_user(request: Request, ref: str) -> dict[str, Any]:
    """One user's profile: default and custom properties, tags, status, identifiers, first/last seen, counts."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    profile = await people.profile(person_id)
    if profile is None:
        raise ApiError.of(404, "ref", "exists", f"no user {ref!r}")
    return _with_list_names(profile, await _list_names(request))


@router.get("/users/{ref}/stage-history")
async def user_stage_history(request: Request, ref: str) -> dict[str, Any]:
    """Every lifecycle stage the user entered, oldest first: when, from which stage, by what (`rule:<stage id>`,
    `api`, `import`) and the reason given."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    return {"person_id": person_id, "history": await people.stage_history(person_id)}


@router.get("/users/{ref}/lists")
async def user_lists(request: Request, ref: str) -> dict[str, Any]:
    """The user's list memberships, past ones included: added when and by whom, removed when and by whom."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    names = {list_id: d.name for list_id, d in (await _lists(request).live()).items()}
    rows = [{**row, "name": names[row["list_id"]]} for row in await people.list_memberships(person_id) if row["list_id"] in names]
    return {"person_id": person_id, "memberships": rows}


# -- update -----------------------------------------------------------------------------------------------


@router.patch("/users/{ref}", status_code=202, response_model=Accepted)
async def update_user(
    request: Request, ref: str, body: UserPatch, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Set and unset properties, set the status (active/disabled), add and remove tags, set the lifecycle stage
    (`stage`, with `stage_reason`; backwards too, recorded in the stage history), add to and remove from lists."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"PATCH /users/{ref}")
    if replay is not None:
        return replay
    body = validate_patch(body)
    _validate_custom(request, body.set, partial=True, unset=body.unset)
    await check_groups(_stages(request), _lists(request), body)
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    await _check_free(people, body.set, person_id)
    await check_unique(_state(request).definitions, _state(request).reader, body.set, person_id, skip=IDENTIFIERS)
    distinct_ids = await people.distinct_ids(person_id)
    known_id = distinct_ids[0] if distinct_ids else None
    records = update_records(_state(request).settings.topics, body, person_id, known_id, command_id, datetime.now(UTC))
    await _send(request, records)
    answer: dict[str, Any] = {"command_id": command_id, "person_id": person_id, "readable": False}
    if wait and await _wait_for(request, lambda: _applied(request, command_id)):
        answer.update(readable=True, user=await people.profile(person_id))
        return _answer(request, command_id, raw, idempotency_key, 200, answer)
    return _answer(request, command_id, raw, idempotency_key, 202, answer)


# -- delete and erase -------------------------------------------------------------------------------------


async def _remove(request: Request, ref: str, kind: Literal["delete", "erase"], wait: bool, idempotency_key: str | None) -> JSONAnswer:
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"{kind.upper()} /users/{ref}")
    if replay is not None:
        return replay
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    profile = await people.profile(person_id) or {}
    identifiers = identifiers_of(profile.get("distinct_ids", []), profile.get("email") or None)
    await request.app.state.configs.remove_overrides_of(_state(request).bus, {person_id, *profile.get("distinct_ids", [])})
    records = delete_records(_state(request).settings.topics, kind, person_id, identifiers, command_id, datetime.now(UTC))
    await _send(request, records)
    answer: dict[str, Any] = {"command_id": command_id, "person_id": person_id, "readable": False}
    if kind == "erase":
        answer["erasure_id"] = command_id
    if wait and await _wait_for(request, lambda: _applied(request, command_id)):
        answer["readable"] = True
        return _answer(request, command_id, raw, idempotency_key, 200, answer)
    return _answer(request, command_id, raw, idempotency_key, 202, answer)


@router.delete("/users/{ref}", status_code=202, response_model=Accepted)
async def delete_user(request: Request, ref: str, wait: Wait = False, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """Delete a user from every table (persons, mappings, events, sessions, daily counts); holds through replay.
    Tracking with the same ids afterwards starts a fresh, visible user."""
    return await _remove(request, ref, "delete", wait, idempotency_key)


@router.post("/users/{ref}/erase", status_code=202, response_model=Accepted)
async def erase_user(request: Request, ref: str, wait: Wait = False, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """GDPR erasure: a delete, and the user's identifiers are suppressed: later tracking with them is dropped
    at the collector (recorded, not projected). The erasure is recorded with hashed identifiers."""
    return await _remove(request, ref, "erase", wait, idempotency_key)


@router.get("/erasures")
async def list_erasures(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The erasure audit trail: when, which person id, the SHA-256 digests of the erased identifiers."""
    rows = await _state(request).reader.rows(
        "SELECT erasure_id, person_id, id_digests, erased_at FROM {db}.erasures FINAL ORDER BY erased_at DESC LIMIT {limit:UInt32}",
        {"limit": limit},
    )
    return {"erasures": rows}


# -- timeline ---------------------------------------------------------------------------------------------


@router.get("/users/{ref}/events")
async def user_events(
    request: Request,
    ref: str,
    event: Annotated[str | None, Query(max_length=512, description="only events of this name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The user's events, newest first, over all of their distinct ids."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    before = None
    if cursor:
        timestamp, message_id = decode_cursor(cursor, 2)
        if not isinstance(timestamp, str) or not isinstance(message_id, str):
            raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out")
        try:
            before = (clickhouse_time(timestamp), message_id)
        except ValueError:
            raise ApiError.of(422, "cursor", "format", "not a cursor this list gave out") from None
    rows = await people.events(person_id, limit, event, before)
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1]["timestamp"], page[-1]["message_id"]]) if len(rows) > limit else None
    return {"events": page, "next_cursor": next_cursor}


@router.get("/users/{ref}/sessions")
async def user_sessions(request: Request, ref: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The user's sessions, newest first."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    return {"sessions": await people.sessions(person_id, limit)}


@router.get("/users/{ref}/merges")
async def user_merges(request: Request, ref: str) -> dict[str, Any]:
    """The persons merged into this user (an identify or alias joining two profiles), newest first."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    return {"person_id": person_id, "merges": await people.merges(person_id)}


@router.get("/users/{ref}/event-counts")
async def user_event_counts(
    request: Request,
    ref: str,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    event: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Events per day (UTC) for the last `days` days, today included, oldest first; days without events are 0."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    today = datetime.now(UTC).date()
    return {"person_id": person_id, "event": event, "days": await people.event_counts(person_id, days, event, today)}


# -- bulk edits -------------------------------------------------------------------------------------------


class BulkFilter(BaseModel):
    """The users GET /api/v1/users would list with these parameters."""

    model_config = ConfigDict(extra="forbid")

    q: Annotated[str, Field(max_length=256)] | None = None
    status: Literal["active", "disabled"] | None = None
    tag: Annotated[str, Field(max_length=64)] | None = None
    kind: Kind | None = None
    stage: Annotated[str, Field(max_length=64)] | None = None
    list: Annotated[str, Field(max_length=64)] | None = None
    properties: dict[str, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict)


class BulkRequest(BaseModel):
    """Which users (refs, or a filter as GET /users takes it) and what to do to each of them."""

    model_config = ConfigDict(extra="forbid")

    refs: list[Annotated[str, Field(max_length=1024)]] | None = Field(default=None, max_length=10_000)
    filter: BulkFilter | None = None
    action: Literal["update", "delete"] = "update"
    update: UserPatch | None = None


@router.post("/users/bulk", status_code=202, tags=["jobs"])
async def bulk_edit(request: Request, body: BulkRequest, idempotency_key: IdempotencyKey = None) -> JSONAnswer:
    """Set or unset properties, add or remove tags, set the status, or delete, for many users: a job to follow
    at GET /api/v1/jobs/{id}."""
    job_id, raw, replay = await _idempotent(request, idempotency_key, "POST /users/bulk")
    if replay is not None:
        return replay
    if (body.refs is None) == (body.filter is None):
        raise ApiError.of(422, "refs", "one_of", "give either refs or filter")
    if body.action == "update":
        if body.update is None:
            raise ApiError.of(422, "update", "required", "action update needs an update (as PATCH /users/{ref} takes it)")
        validate_patch(body.update)
        await check_groups(_stages(request), _lists(request), body.update)
        errors = [e for e in ("user_id", "email", "phone", "customer_id") if e in body.update.set]
        if errors:
            raise ApiError(
                422,
                [FieldError(f"update.set.{name}", "unique", f"{name} identifies one user; it cannot be set in bulk") for name in errors],
            )
    query = None
    if body.filter is not None:
        query = ListQuery(**body.filter.model_dump(), sort="visitor_number", limit=1000).check()
    for ref in body.refs or []:
        parse_ref(ref)
    jobs: Jobs = _state(request).jobs
    job = jobs.start(BulkEdit(job_id=job_id, refs=body.refs, query=query, action=body.action, update=body.update), request.app)
    answer = {"job_id": job.job_id, "state": job.state, "url": f"/api/v1/jobs/{job.job_id}"}
    return _answer(request, job_id, raw, idempotency_key, 202, answer)


@jobs_router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    """A bulk edit's progress: matched users, commands sent and applied, refs not found."""
    jobs: Jobs = _state(request).jobs
    job = jobs.get(job_id)
    if job is None:
        raise ApiError.of(404, "job_id", "exists", f"no job {job_id!r}")
    applied = await _state(request).reader.rows(
        "SELECT count() AS applied FROM {db}.user_commands FINAL WHERE job_id = {j:String}", {"j": job_id}
    )
    return job.as_json(int(applied[0]["applied"]) if applied else 0)


@commands_router.get("/commands/{command_id}")
async def get_command(request: Request, command_id: str) -> dict[str, Any]:
    """Whether a command was applied (readable): what ?wait=true waits for."""
    rows = await _state(request).reader.rows(
        "SELECT command_id, kind, person_id, at, job_id FROM {db}.user_commands FINAL WHERE command_id = {c:String}", {"c": command_id}
    )
    if not rows:
        raise ApiError.of(404, "command_id", "exists", f"command {command_id!r} is not applied (yet), or unknown")
    return {**rows[0], "applied": True}
