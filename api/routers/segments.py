"""/api/v1/segments: real-time segments (schemas/segments.py), their preview, members and status.

A segment's definition is a version on the compacted `segments` topic (key: the segment id). The evaluator
(`footfall segments`) decides membership in ClickHouse and publishes every enter and exit on `profile-changes`;
`segment_members` keeps each period (entered_at, exited_at), so members at a past time can be asked for
(`?at=`). Each segment's status (last evaluated, duration, members, last error, how stale) comes from the
evaluator's `segment-status` topic.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.bodies import StrictJSONRoute
from api.errors import ApiError, FieldError
from api.groups import Lists, Segments
from api.jobs import BulkEdit
from api.memberships import members_page
from api.people import People
from api.routers.lists import IdempotencyKey
from api.user_model import ListEdit, UserPatch, parse_ref
from api.user_query import ListQuery
from schemas.conditions import ConditionGroup
from schemas.lists import ListDefinition
from schemas.segments import (
    SEGMENT_ID_PATTERN,
    SegmentDefinition,
    SegmentStatus,
    compile_segment,
    is_property_only,
    operator_problems,
    reference_problem,
    segments_referenced,
)
from schemas.user_commands import command_id_for

router = APIRouter(tags=["segments"], route_class=StrictJSONRoute)
SegmentName = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=2000)]
CONDITION_DOC = (
    "an AND/OR group (`match`: all/any), nestable, of conditions: `property` (default, custom or derived `$` properties, "
    "operators by type), `tag`, `list`, `stage`, `status`, `identity`, `event` (performed at least/at most N times in the "
    "last D days, optional `where` on its properties), `session_count`, `last_seen` (within D days), `segment` (membership)"
)
SAMPLE_COLUMNS = "person_id, email, name, stage, last_seen"


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SegmentName
    description: Description = ""
    id: str | None = Field(None, pattern=SEGMENT_ID_PATTERN, description="default: a new UUID")
    condition: ConditionGroup = Field(description=CONDITION_DOC)


class SegmentPatch(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: SegmentName | None = None
    description: Description | None = None
    condition: ConditionGroup | None = Field(None, description=CONDITION_DOC)


class SegmentPreview(BaseModel):
    """A condition to try before saving: how many users meet it now, and a sample of them."""

    model_config = ConfigDict(extra="forbid")

    condition: ConditionGroup = Field(description=CONDITION_DOC)
    id: str | None = Field(None, pattern=SEGMENT_ID_PATTERN, description="the segment being edited (so it may not refer to itself)")
    sample: int = Field(10, ge=0, le=100, description="how many matching users to return")


class SegmentFreeze(BaseModel):
    """Freeze the segment's current members into a static list: a new one (`name`) or an existing one (`list_id`)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    list_id: Annotated[str, Field(max_length=64)] | None = None


def _segments(request: Request) -> Segments:
    return request.app.state.segments


def _status_json(request: Request, definition: SegmentDefinition) -> dict[str, Any]:
    found: SegmentStatus | None = request.app.state.segment_statuses.records.get(definition.id)
    interval = request.app.state.settings.segments_interval_seconds
    if found is None:
        return {"state": "pending", "evaluated_at": None, "members": None, "error": None, "stale_seconds": None}
    stale = (datetime.now(UTC) - found.evaluated_at).total_seconds() if found.evaluated_at else None
    state = "error" if found.error and (found.error_at and (not found.evaluated_at or found.error_at >= found.evaluated_at)) else "ok"
    if state == "ok" and (found.version < definition.version or found.evaluated_at is None):
        state = "pending"  # the evaluator has not run the current version yet
    elif state == "ok" and stale is not None and stale > 2 * interval + 10:
        state = "stale"
    return {
        "state": state,
        "evaluated_at": found.evaluated_at.isoformat() if found.evaluated_at else None,
        "evaluated_version": found.version,
        "duration_ms": found.duration_ms,
        "members": found.members,
        "entered": found.entered,
        "exited": found.exited,
        "error": found.error,
        "error_at": found.error_at.isoformat() if found.error_at else None,
        "stale_seconds": round(stale, 1) if stale is not None else None,
        "interval_seconds": interval,
    }


def _as_json(request: Request, definition: SegmentDefinition, live: dict[str, SegmentDefinition]) -> dict[str, Any]:
    found = definition.model_dump(mode="json", exclude={"deleted"})
    found["evaluation"] = "on profile changes and every interval" if is_property_only(definition.condition, live) else "every interval"
    found["status"] = _status_json(request, definition)
    return found


async def _live(request: Request, segment_id: str) -> tuple[dict[str, SegmentDefinition], SegmentDefinition]:
    live = await _segments(request).live()
    if segment_id not in live:
        raise ApiError.of(404, "id", "exists", f"no segment {segment_id!r}")
    return live, live[segment_id]


def _check_condition(request: Request, segment_id: str, condition: ConditionGroup, live: dict[str, SegmentDefinition]) -> None:
    """422 naming every operator that does not fit its property's type, and a reference to a segment that is
    missing or leads back to this one."""
    custom = {name: d.type for name, d in request.app.state.definitions.current.items()}
    errors = [FieldError(path, "operator", message) for path, message in operator_problems(condition, custom)]
    if problem := reference_problem(segment_id, condition, live):
        errors.append(FieldError("condition", "segment_reference", problem))
    if errors:
        raise ApiError(422, errors)


async def _publish(request: Request, definition: SegmentDefinition) -> None:
    def applied(found: SegmentDefinition | None) -> bool:
        return found is not None and found.version >= definition.version

    await _segments(request).publish(request.app.state.bus, [(definition.id, definition.model_dump_json().encode(), applied)])


@router.get("/segments")
async def list_segments(request: Request) -> dict[str, Any]:
    """Every segment, by name, with its evaluation status."""
    live = await _segments(request).live()
    return {"segments": [_as_json(request, d, live) for d in sorted(live.values(), key=lambda d: (d.name.casefold(), d.id))]}


@router.post("/segments", status_code=201)
async def create_segment(request: Request, body: SegmentCreate) -> ORJSONResponse:
    """Create a segment; the evaluator takes it up within a few seconds."""
    await _segments(request).ready()
    segment_id = body.id or str(uuid.uuid4())
    previous = _segments(request).records.get(segment_id)
    if previous is not None and not previous.deleted:
        raise ApiError.of(409, "id", "unique", f"there is a segment {segment_id!r} already")
    live = await _segments(request).live()
    _check_condition(request, segment_id, body.condition, live)
    now = datetime.now(UTC)
    definition = SegmentDefinition(
        id=segment_id,
        name=body.name,
        description=body.description,
        condition=body.condition,
        version=(previous.version + 1) if previous else 1,
        created_at=now,
        updated_at=now,
    )
    await _publish(request, definition)
    return ORJSONResponse(_as_json(request, definition, {**live, segment_id: definition}), 201)


@router.post("/segments/preview")
async def preview_segment(request: Request, body: SegmentPreview) -> dict[str, Any]:
    """How many users meet the condition now, and a sample of them (nothing is saved)."""
    live = await _segments(request).live()
    _check_condition(request, body.id or f"preview-{uuid.uuid4()}", body.condition, live)
    compiled = compile_segment(body.condition, live, datetime.now(UTC))
    started = time.perf_counter()
    reader = request.app.state.reader
    if body.sample:
        # The count as a window over the same read as the sample: one pass over the persons, not two.
        found = await reader.rows(
            f"{compiled.members_sql(SAMPLE_COLUMNS + ', count() OVER () AS members')} "
            "ORDER BY last_seen DESC, person_id LIMIT {sample_limit:UInt32}",
            {**compiled.parameters, "sample_limit": body.sample},
        )
        count = int(found[0]["members"]) if found else 0
        sample = [{k: v for k, v in row.items() if k != "members"} for row in found]
    else:
        counted = await reader.rows(f"SELECT count() AS members FROM ({compiled.members_sql()})", compiled.parameters)
        count, sample = int(counted[0]["members"]) if counted else 0, []
    return {
        "count": count,
        "sample": sample,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }


@router.get("/segments/{segment_id}")
async def get_segment(request: Request, segment_id: str) -> dict[str, Any]:
    live, definition = await _live(request, segment_id)
    return _as_json(request, definition, live)


@router.patch("/segments/{segment_id}")
async def update_segment(request: Request, segment_id: str, body: SegmentPatch) -> dict[str, Any]:
    """Rename, describe or change the condition; a new condition is evaluated at once."""
    live, current = await _live(request, segment_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set if getattr(body, name) is not None}
    if "condition" in changes:
        _check_condition(request, segment_id, changes["condition"], live)
    updated = current.model_copy(update={**changes, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, updated)
    return _as_json(request, updated, {**live, segment_id: updated})


@router.delete("/segments/{segment_id}")
async def delete_segment(request: Request, segment_id: str) -> dict[str, Any]:
    """Delete a segment (409 while another segment or a stage rule refers to it or a config targets it): its members exit; past memberships stay in
    segment_members."""
    live, current = await _live(request, segment_id)
    users = sorted(s.id for s in live.values() if segment_id in segments_referenced(s.condition))
    if users:
        raise ApiError.of(409, "id", "in_use", f"segments {', '.join(users)} refer to {segment_id!r}: change them first", segments=users)
    ruled = [s.id for s in await request.app.state.stages.current() if s.rule is not None and segment_id in segments_referenced(s.rule)]
    if ruled:
        raise ApiError.of(
            409, "id", "in_use", f"the rules of stages {', '.join(ruled)} refer to {segment_id!r}: change them first", stages=ruled
        )
    if configs := await request.app.state.configs.targeting("segment", segment_id):
        raise ApiError.of(
            409, "id", "in_use", f"configs {', '.join(configs)} target {segment_id!r}: change their rules first", configs=configs
        )
    gone = current.model_copy(update={"deleted": True, "version": current.version + 1, "updated_at": datetime.now(UTC)})
    await _publish(request, gone)
    return {"id": segment_id, "deleted": True, "version": gone.version}


@router.get("/segments/{segment_id}/members")
async def segment_members(
    request: Request,
    segment_id: str,
    at: Annotated[datetime | None, Query(description="members at this past time (ISO 8601); default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The segment's members (with when each entered), by person id, a page at a time."""
    await _live(request, segment_id)
    page, next_cursor = await members_page(
        request.app.state.reader,
        table="segment_members",
        owner_column="segment_id",
        owner=segment_id,
        period_columns="m.entered_at AS entered_at, m.exited_at AS exited_at, m.entry AS entry",
        opened="entered_at",
        closed="exited_at",
        at=at,
        limit=limit,
        cursor=cursor,
    )
    return {"segment_id": segment_id, "members": page, "next_cursor": next_cursor}


@router.post("/segments/{segment_id}/freeze", status_code=202, tags=["jobs", "lists"])
async def freeze_segment(request: Request, segment_id: str, body: SegmentFreeze, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Freeze the segment's current members into a static list (a snapshot: later members are not added), in one
    call: creates the list when `name` is given, then a job adds every member (GET /api/v1/jobs/{id})."""
    _, segment = await _live(request, segment_id)
    if (body.name is None) == (body.list_id is None):
        raise ApiError.of(422, "name", "one_of", "give either name (a new list) or list_id (an existing one)")
    lists: Lists = request.app.state.lists
    if body.list_id is not None:
        if body.list_id not in await lists.live():
            raise ApiError.of(404, "list_id", "exists", f"no list {body.list_id!r}")
        list_id = body.list_id
    else:
        await lists.ready()
        list_id = command_id_for(idempotency_key, f"freeze {segment_id}") if idempotency_key else str(uuid.uuid4())
        if list_id not in await lists.live():
            now = datetime.now(UTC)
            definition = ListDefinition(id=list_id, name=body.name or segment.name, created_at=now, updated_at=now)
            await lists.publish(request.app.state.bus, [(list_id, definition.model_dump_json().encode(), lambda found: found is not None)])
    job_id = command_id_for(idempotency_key, f"{request.method} {request.url.path}") if idempotency_key else str(uuid.uuid4())
    edit = ListEdit(add=[list_id], by=f"segment:{segment_id}")
    query = ListQuery(segment=segment_id, sort="visitor_number", limit=1000)
    job = request.app.state.jobs.start(
        BulkEdit(job_id=job_id, refs=None, query=query, action="update", update=UserPatch(lists=edit)), request.app
    )
    return {"list_id": list_id, "job_id": job_id, "state": job.state, "url": f"/api/v1/jobs/{job_id}"}


user_segments_router = APIRouter(tags=["users"], route_class=StrictJSONRoute)


@user_segments_router.get("/users/{ref}/segments")
async def user_segments(
    request: Request, ref: str, include_exited: Annotated[bool, Query(description="also past memberships")] = False
) -> dict[str, Any]:
    """The segments the user is in (with when it entered), newest first; with include_exited, past periods too."""
    person_id = await People(request.app.state.reader).require(parse_ref(ref), ref)
    live = await _segments(request).live()
    rows = await request.app.state.reader.rows(
        "SELECT segment_id, entry, entered_at, exited_at FROM {db}.segment_members FINAL WHERE person_id = {person:String} "
        "AND ({all:Bool} OR exited_at IS NULL) ORDER BY entered_at DESC, segment_id",
        {"person": person_id, "all": include_exited},
    )
    return {
        "person_id": person_id,
        "segments": [{**row, "name": live[row["segment_id"]].name if row["segment_id"] in live else None} for row in rows],
    }
