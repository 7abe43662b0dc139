"""/api/v1/lists: static lists (schemas/lists.py) and their members.

A list's definition is a version on the compacted `lists` topic (key: the list id). Membership is a command per
user on `user-commands` (`lists.add` / `lists.remove` of PATCH /users/{ref}), sent by a job: adding refs, removing
refs, or adding everyone a filter matches now (a snapshot: later users are not added). Each membership keeps who
added it and when; `list_members` keeps past memberships too (GET .../members?at=<time>).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.bodies import StrictJSONRoute
from api.errors import ApiError
from api.groups import Lists
from api.jobs import BulkEdit
from api.memberships import members_page
from api.routers.users import BulkFilter
from api.user_model import ListEdit, UserPatch, parse_ref
from api.user_query import ListQuery
from schemas.lists import ListDefinition
from schemas.user_commands import command_id_for

router = APIRouter(tags=["lists"], route_class=StrictJSONRoute)
ListName = Annotated[str, Field(min_length=1, max_length=200)]
Ref = Annotated[str, Field(max_length=1024)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="a retried request with the same key starts no second job and sends the same commands",
    ),
]


class ListCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ListName
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="default: a new UUID")


class ListRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ListName


class MembersAdd(BaseModel):
    """Refs to add, or a filter (as GET /api/v1/users takes it) whose users now are added: a snapshot."""

    model_config = ConfigDict(extra="forbid")

    refs: list[Ref] | None = Field(None, max_length=10_000)
    filter: BulkFilter | None = None
    by: Annotated[str, Field(max_length=200)] = Field("", description="who adds them (kept with each membership); default api, or snapshot")


class MembersRemove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refs: list[Ref] = Field(max_length=10_000)
    by: Annotated[str, Field(max_length=200)] = ""


def _lists(request: Request) -> Lists:
    return request.app.state.lists


def _as_json(definition: ListDefinition, members: int | None = None) -> dict[str, Any]:
    found = definition.model_dump(mode="json", exclude={"deleted"})
    return found if members is None else {**found, "members": members}


async def _member_counts(request: Request, list_ids: list[str]) -> dict[str, int]:
    rows = await request.app.state.reader.rows(
        # No check against persons: a deleted or erased person's memberships are removed with its profile
        # (projections/removals.py) and a merged-away person's are hidden, so the list's own rows are the count.
        "SELECT list_id, count() AS members FROM {db}.list_members FINAL WHERE list_id IN {ids:Array(String)} AND removed_at IS NULL "
        "GROUP BY list_id",
        {"ids": list_ids},
    )
    return {row["list_id"]: int(row["members"]) for row in rows}


async def _live(request: Request, list_id: str) -> ListDefinition:
    found = (await _lists(request).live()).get(list_id)
    if found is None:
        raise ApiError.of(404, "id", "exists", f"no list {list_id!r}")
    return found


async def _publish(request: Request, definition: ListDefinition) -> None:
    def applied(found: ListDefinition | None) -> bool:
        return found is not None and found.version >= definition.version

    await _lists(request).publish(request.app.state.bus, [(definition.id, definition.model_dump_json().encode(), applied)])


@router.get("/lists")
async def list_lists(
    request: Request,
    counts: Annotated[bool, Query(description="false: without member counts (no ClickHouse read), e.g. for a picker")] = True,
) -> dict[str, Any]:
    """Every list, by name, with its member count."""
    live = sorted((await _lists(request).live()).values(), key=lambda d: (d.name.casefold(), d.id))
    if not counts:
        return {"lists": [_as_json(d) for d in live]}
    members = await _member_counts(request, [d.id for d in live])
    return {"lists": [_as_json(d, members.get(d.id, 0)) for d in live]}


@router.post("/lists", status_code=201)
async def create_list(request: Request, body: ListCreate) -> ORJSONResponse:
    await _lists(request).ready()
    list_id = body.id or str(uuid.uuid4())
    previous = _lists(request).records.get(list_id)
    if previous is not None and not previous.deleted:
        raise ApiError.of(409, "id", "unique", f"there is a list {list_id!r} already")
    now = datetime.now(UTC)
    definition = ListDefinition(
        id=list_id, name=body.name, version=(previous.version + 1) if previous else 1, created_at=now, updated_at=now
    )
    await _publish(request, definition)
    return ORJSONResponse(_as_json(definition, 0), 201)


@router.get("/lists/{list_id}")
async def get_list(request: Request, list_id: str) -> dict[str, Any]:
    definition = await _live(request, list_id)
    return _as_json(definition, (await _member_counts(request, [list_id])).get(list_id, 0))


@router.patch("/lists/{list_id}")
async def rename_list(request: Request, list_id: str, body: ListRename) -> dict[str, Any]:
    current = await _live(request, list_id)
    renamed = current.model_copy(update={"name": body.name, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, renamed)
    return _as_json(renamed)


@router.delete("/lists/{list_id}")
async def delete_list(request: Request, list_id: str) -> dict[str, Any]:
    """Delete a list (409 while a config targets it): it leaves every user's lists; its past memberships stay
    queryable in list_members."""
    current = await _live(request, list_id)
    if configs := await request.app.state.configs.targeting("list", list_id):
        raise ApiError.of(
            409, "id", "in_use", f"configs {', '.join(configs)} target list {list_id!r}: change their rules first", configs=configs
        )
    gone = current.model_copy(update={"deleted": True, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, gone)
    return {"id": list_id, "deleted": True, "version": gone.version}


@router.get("/lists/{list_id}/members")
async def list_members(
    request: Request,
    list_id: str,
    at: Annotated[datetime | None, Query(description="members at this past time (ISO 8601); default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The list's members (with who added each and when), by person id, a page at a time."""
    await _live(request, list_id)
    page, next_cursor = await members_page(
        request.app.state.reader,
        table="list_members",
        owner_column="list_id",
        owner=list_id,
        period_columns="m.added_at AS added_at, m.added_by AS added_by, m.removed_at AS removed_at",
        opened="added_at",
        closed="removed_at",
        at=at,
        limit=limit,
        cursor=cursor,
    )
    return {"list_id": list_id, "members": page, "next_cursor": next_cursor}


def _start(request: Request, edit: ListEdit, refs: list[str] | None, query: ListQuery | None, key: str | None) -> dict[str, Any]:
    """The job sending one command per user. With an Idempotency-Key, the job id (so each command's id) derives
    from the key: a retry finds the job, or in another process sends the same commands, which apply once."""
    job_id = command_id_for(key, f"{request.method} {request.url.path}") if key else str(uuid.uuid4())
    job = BulkEdit(job_id=job_id, refs=refs, query=query, action="update", update=UserPatch(lists=edit))
    job = request.app.state.jobs.start(job, request.app)
    return {"job_id": job_id, "state": job.state, "url": f"/api/v1/jobs/{job_id}"}


@router.post("/lists/{list_id}/members", status_code=202, tags=["jobs"])
async def add_members(request: Request, list_id: str, body: MembersAdd, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Add users by ref, or everyone a filter matches now (a snapshot): a job to follow at GET /api/v1/jobs/{id}."""
    await _live(request, list_id)
    if (body.refs is None) == (body.filter is None):
        raise ApiError.of(422, "refs", "one_of", "give either refs or filter")
    for ref in body.refs or []:
        parse_ref(ref)
    query = ListQuery(**body.filter.model_dump(), sort="visitor_number", limit=1000).check() if body.filter else None
    by = body.by or ("snapshot" if body.filter else "api")
    return _start(request, ListEdit(add=[list_id], by=by), body.refs, query, idempotency_key)


@router.post("/lists/{list_id}/members/remove", status_code=202, tags=["jobs"])
async def remove_members(request: Request, list_id: str, body: MembersRemove, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Remove users by ref: a job to follow at GET /api/v1/jobs/{id}."""
    await _live(request, list_id)
    for ref in body.refs:
        parse_ref(ref)
    return _start(request, ListEdit(remove=[list_id], by=body.by or "api"), body.refs, None, idempotency_key)
