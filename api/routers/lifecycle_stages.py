"""/api/v1/lifecycle-stages: the ordered lifecycle stages (schemas/stages.py), their rules, and deleting one with
its users moved to another.

Every change is a new version of a stage on the compacted `lifecycle-stages` topic (key: the stage id), answered
once Kafka acknowledged it and this process has read it back. Deleting a stage that users are in needs
`move_to`: the stage's deletion names it, and a job (GET /api/v1/jobs/{id}) sends every user in the stage a
stage command to it (by `api`, with the reason), so the move is in the command log and survives a replay.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.bodies import StrictJSONRoute
from api.errors import ApiError, FieldError
from api.groups import Stages
from api.jobs import BulkEdit
from api.user_model import UserPatch
from api.user_query import ListQuery
from schemas.conditions import Condition
from schemas.segments import operator_problems, reference_problem
from schemas.stages import STAGE_ID_PATTERN, StageDefinition, decided_in_memory, reordered

router = APIRouter(tags=["lifecycle stages"], route_class=StrictJSONRoute)
StageName = Annotated[str, Field(min_length=1, max_length=100)]
Order = Annotated[int, Field(ge=0, le=1_000_000, description="stages sort by order (then id); default: after the last")]
RULE_DOC = (
    "a condition of the segment language (as /api/v1/segments: property, tag, list, stage, status, identity, event, "
    "session_count, last_seen, segment, and AND/OR groups) that moves a user forward into this stage, never back, "
    "at most once per user"
)


class StageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STAGE_ID_PATTERN, description="lower-case letters, digits and '_', starting with a letter")
    name: StageName
    order: Order | None = None
    rule: Condition | None = Field(None, description=RULE_DOC)


class StagePatch(BaseModel):
    """Only the fields sent change; `"rule": null` removes the rule."""

    model_config = ConfigDict(extra="forbid")

    name: StageName | None = None
    order: Order | None = None
    rule: Condition | None = Field(None, description=RULE_DOC)


class StageOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(max_length=64)]] = Field(description="every stage id, in the new order", max_length=1000)


def _stages(request: Request) -> Stages:
    return request.app.state.stages


def _evaluation(rule: Condition | None) -> str | None:
    """Who decides the rule, and when (ARCHITECTURE.md, "Lifecycle stages")."""
    if rule is None:
        return None
    if decided_in_memory(rule):
        return "by the projector, when the profile changes"
    return "by the segment evaluator in ClickHouse, when profiles change if the rule reads only profiles, else every segments interval"


def _as_json(stage: StageDefinition, position: int, users: dict[str, int] | None) -> dict[str, Any]:
    found = {
        "id": stage.id,
        "name": stage.name,
        "order": stage.order,
        "position": position,
        "built_in": stage.built_in,
        "rule": stage.rule.model_dump(mode="json") if stage.rule is not None else None,
        "rule_id": f"rule:{stage.id}",
        "rule_evaluation": _evaluation(stage.rule),
        "version": stage.version,
    }
    return found if users is None else {**found, "users": users.get(stage.id, 0)}


async def _user_counts(request: Request) -> dict[str, int]:
    rows = await request.app.state.reader.rows(
        "SELECT stage, count() AS users FROM {db}.persons FINAL WHERE stage != '' GROUP BY stage", {}
    )
    return {row["stage"]: int(row["users"]) for row in rows}


async def _check_rule(request: Request, stage_id: str, rule: Condition | None) -> None:
    """422 naming every operator that does not fit its property's type, and a segment the rule names that does not exist."""
    if rule is None:
        return
    custom = {name: d.type for name, d in request.app.state.definitions.current.items()}
    errors = [FieldError("rule" + path.removeprefix("condition"), "operator", message) for path, message in operator_problems(rule, custom)]
    if problem := reference_problem(f"stage:{stage_id}", rule, await request.app.state.segments.live()):
        errors.append(FieldError("rule", "segment_reference", problem))
    if errors:
        raise ApiError(422, errors)


async def _publish(request: Request, stages: list[StageDefinition]) -> None:
    items = [(s.id, s.model_dump_json().encode(), lambda found, v=s.version: found is not None and found.version >= v) for s in stages]
    await _stages(request).publish(request.app.state.bus, items)


async def _in_force(request: Request, stage_id: str) -> tuple[list[StageDefinition], StageDefinition]:
    current = await _stages(request).current()
    found = next((s for s in current if s.id == stage_id), None)
    if found is None:
        raise ApiError.of(404, "id", "exists", f"no lifecycle stage {stage_id!r}")
    return current, found


@router.get("/lifecycle-stages")
async def list_stages(
    request: Request,
    counts: Annotated[bool, Query(description="false: without user counts (no ClickHouse read), e.g. for a picker")] = True,
) -> dict[str, Any]:
    """The stages in order, with how many users are in each."""
    users = await _user_counts(request) if counts else None
    return {"stages": [_as_json(s, i, users) for i, s in enumerate(await _stages(request).current())]}


@router.get("/lifecycle-stages/{stage_id}")
async def get_stage(request: Request, stage_id: str) -> dict[str, Any]:
    current, found = await _in_force(request, stage_id)
    return _as_json(found, current.index(found), await _user_counts(request))


@router.post("/lifecycle-stages", status_code=201)
async def create_stage(request: Request, body: StageCreate) -> ORJSONResponse:
    """Add a stage (409 when the id is in use)."""
    await _check_rule(request, body.id, body.rule)
    current = await _stages(request).current()
    if any(s.id == body.id for s in current):
        raise ApiError.of(409, "id", "unique", f"there is a stage {body.id!r} already")
    previous = (await _stages(request).latest()).get(body.id)
    order = body.order if body.order is not None else (current[-1].order + 10 if current else 0)
    stage = StageDefinition(
        id=body.id,
        name=body.name,
        order=order,
        rule=body.rule,
        version=(previous.version + 1) if previous else 1,
        updated_at=datetime.now(UTC),
    )
    await _publish(request, [stage])
    current = await _stages(request).current()
    return ORJSONResponse(_as_json(stage, next(i for i, s in enumerate(current) if s.id == stage.id), {}), 201)


@router.patch("/lifecycle-stages/{stage_id}")
async def update_stage(request: Request, stage_id: str, body: StagePatch) -> dict[str, Any]:
    """Rename a stage, move it (`order`), or set or remove its rule."""
    await _check_rule(request, stage_id, body.rule)
    _, found = await _in_force(request, stage_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if changes.get("name") is None:
        changes.pop("name", None)
    if changes.get("order") is None:
        changes.pop("order", None)
    stage = found.model_copy(update={**changes, "version": found.version + 1, "built_in": False, "updated_at": datetime.now(UTC)})
    await _publish(request, [stage])
    current = await _stages(request).current()
    return _as_json(stage, next(i for i, s in enumerate(current) if s.id == stage.id), await _user_counts(request))


@router.put("/lifecycle-stages/order")
async def reorder_stages(request: Request, body: StageOrder) -> dict[str, Any]:
    """Put the stages in this order (every stage id once)."""
    current = await _stages(request).current()
    try:
        changes = reordered(current, body.ids)
    except ValueError:
        raise ApiError.of(422, "ids", "every_stage", f"list every stage exactly once: {', '.join(s.id for s in current)}") from None
    by_id = {s.id: s for s in current}
    now = datetime.now(UTC)
    await _publish(
        request,
        [
            by_id[i].model_copy(update={"order": o, "version": by_id[i].version + 1, "built_in": False, "updated_at": now})
            for i, o in changes
        ],
    )
    return await list_stages(request)


@router.delete("/lifecycle-stages/{stage_id}")
async def delete_stage(
    request: Request,
    stage_id: str,
    move_to: Annotated[str | None, Query(max_length=64, description="the stage its users move to (required when it has users)")] = None,
) -> dict[str, Any]:
    """Delete a stage. Users in it move to `move_to`: one stage command per user, sent by a job."""
    current, found = await _in_force(request, stage_id)
    users = (await _user_counts(request)).get(stage_id, 0)
    if move_to is not None and (move_to == stage_id or all(s.id != move_to for s in current)):
        raise ApiError.of(
            422, "move_to", "one_of", f"move_to names another stage: one of {', '.join(s.id for s in current if s.id != stage_id)}"
        )
    if users and move_to is None:
        raise ApiError(
            409,
            [
                FieldError(
                    "move_to",
                    "required",
                    f"{users} users are in {stage_id}: name the stage they move to (?move_to=<stage id>)",
                    {"users": users},
                )
            ],
        )
    if len(current) == 1:
        raise ApiError.of(422, "id", "last_stage", "the last stage cannot be deleted")
    gone = found.model_copy(
        update={"deleted": True, "moved_to": move_to, "version": found.version + 1, "built_in": False, "updated_at": datetime.now(UTC)}
    )
    await _publish(request, [gone])
    answer: dict[str, Any] = {"id": stage_id, "deleted": True, "moved_to": move_to, "users": users, "job_id": None}
    if move_to is not None:
        job_id = str(uuid.uuid4())
        move = UserPatch(stage=move_to, stage_reason=f"stage {found.name} ({stage_id}) deleted")
        query = ListQuery(stage=stage_id, sort="visitor_number", limit=1000)
        request.app.state.jobs.start(BulkEdit(job_id=job_id, refs=None, query=query, action="update", update=move), request.app)
        answer.update(job_id=job_id, job_url=f"/api/v1/jobs/{job_id}")
    return answer
