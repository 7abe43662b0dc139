"""/api/v1/object-types and /api/v1/objects/{type}: deals, tickets, activities and any type defined here;
a user's objects at /api/v1/users/{ref}/objects.

Each object write, top to bottom: the type (404) → validate the body against the type's stages and property
definitions (422 per property, as for users) → resolve linked users (404) → one command on `object-commands`
(answered once Kafka acknowledged it) → with ?wait=true, until the projector applied it and it is readable.
A move into a stage with a stage effect also sends each linked user's lifecycle stage write on user-commands
(the same command PATCH /users/{ref} {"stage": ...} sends).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import ValidationError

from api.bodies import StrictJSONRoute
from api.commands import Record
from api.errors import ApiError, FieldError, JSONAnswer
from api.objects import (
    Links,
    ObjectCreate,
    ObjectPatch,
    ObjectQuery,
    Objects,
    ObjectTypeBody,
    ObjectTypes,
    StageMove,
    check_properties,
    check_stage,
)
from api.routers.users import Accepted, IdempotencyKey, Wait, _answer, _idempotent, _people, _send, _wait_for
from api.user_model import parse_ref
from schemas.objects import Link, ObjectCommand, ObjectTypeDefinition
from schemas.user_commands import UserCommand, command_id_for

router = APIRouter(tags=["objects"], route_class=StrictJSONRoute)
user_objects_router = APIRouter(tags=["users"], route_class=StrictJSONRoute)


def _types(request: Request) -> ObjectTypes:
    return request.app.state.object_types


def _objects(request: Request) -> Objects:
    return Objects(request.app.state.reader)


# -- object types -----------------------------------------------------------------------------------------


def _type_json(definition: ObjectTypeDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", exclude={"deleted"})


@router.get("/object-types")
async def list_object_types(request: Request) -> dict[str, Any]:
    """Every object type in force (deal, ticket, activity and those defined here), by name."""
    current = await _types(request).current()
    return {"object_types": [_type_json(current[name]) for name in sorted(current)]}


@router.get("/object-types/{name}")
async def get_object_type(request: Request, name: str) -> dict[str, Any]:
    return _type_json(await _types(request).require(name))


@router.put("/object-types/{name}")
async def put_object_type(request: Request, name: str, body: ObjectTypeBody) -> ORJSONResponse:
    """Define or replace a type: `stages` (pipeline order; the first is where objects start), `closed_stages`,
    `properties` (property definitions, as /api/v1/property-definitions takes them), `stage_effects`
    (stage → lifecycle stage id). The built-in types can be redefined (their name stays)."""
    types = _types(request)
    await types.ready()
    previous = types.records.get(name)
    current = (await types.current()).get(name)
    try:
        definition = ObjectTypeDefinition(
            **body.model_dump(),
            name=name,
            built_in=current.built_in if current else False,
            version=(previous.version + 1) if previous else 1,
            updated_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        raise ApiError(
            422, [FieldError(".".join(str(p) for p in e["loc"]) or "body", e["type"], e["msg"]) for e in exc.errors(include_url=False)]
        ) from exc
    stages = await request.app.state.stages.ids()
    unknown = [s for s in definition.stage_effects.values() if s not in stages]
    if unknown:
        raise ApiError.of(422, "stage_effects", "one_of", f"not lifecycle stages: {', '.join(unknown)} (GET /api/v1/lifecycle-stages)")
    await _publish_type(request, definition)
    return ORJSONResponse(_type_json(definition), status_code=200 if current else 201)


@router.delete("/object-types/{name}")
async def delete_object_type(request: Request, name: str) -> dict[str, Any]:
    """Delete a defined type (its objects stay in ClickHouse); a built-in type goes back to its default."""
    types = _types(request)
    current = await types.require(name)
    previous = types.records.get(name)
    definition = current.model_copy(
        update={"version": (previous.version + 1) if previous else 1, "deleted": True, "updated_at": datetime.now(UTC)}
    )
    await _publish_type(request, definition)
    return {"name": name, "deleted": True}


async def _publish_type(request: Request, definition: ObjectTypeDefinition) -> None:
    def applied(found: ObjectTypeDefinition | None) -> bool:
        return found is not None and found.version >= definition.version

    await _types(request).publish(request.app.state.bus, [(definition.name, definition.model_dump_json().encode(), applied)])


# -- objects ------------------------------------------------------------------------------------------------


def _record(request: Request, command: ObjectCommand) -> Record:
    return Record(request.app.state.settings.topics.object_commands.name, command.key, command.model_dump_json().encode())


async def _links(request: Request, links: Links) -> list[Link]:
    """Users resolved to person ids (404 naming the ref), companies as given (404 when there is no such company)."""
    people = _people(request)
    resolved = [Link(kind="user", id=await people.require(parse_ref(ref), ref)) for ref in dict.fromkeys(links.users)]
    if links.companies:
        known = {
            r["company_id"]
            for r in await request.app.state.reader.rows(
                "SELECT company_id FROM {db}.companies FINAL WHERE company_id IN {c:Array(String)}", {"c": list(links.companies)}
            )
        }
        missing = [c for c in links.companies if c not in known]
        if missing:
            raise ApiError.of(404, "links.companies", "exists", f"no company {missing[0]!r}")
    return [*resolved, *(Link(kind="company", id=c) for c in dict.fromkeys(links.companies))]


async def _publish(
    request: Request, commands: list[ObjectCommand], wait: bool, key: str | None, raw: bytes, status: int = 200, extra: list[Record] = ()
) -> JSONAnswer:
    """Send the command (and any user commands it causes); with ?wait=true answer once it is applied, with the object."""
    command = commands[-1]
    await _send(request, [*(_record(request, c) for c in commands), *extra])
    answer: dict[str, Any] = {"command_id": command.command_id, "type": command.object_type, "id": command.object_id, "readable": False}
    if wait:
        objects = _objects(request)

        async def readable() -> dict[str, Any] | None:
            if not await objects.applied(command.command_id):
                return None
            if command.kind == "delete":
                return {"deleted": True} if await objects.get(command.object_type, command.object_id) is None else None
            found = await objects.with_links(command.object_type, command.object_id)
            return {"object": found} if found is not None else None

        shown = await _wait_for(request, readable)
        if shown is not None:
            answer.update(readable=True, **shown)
            return _answer(request, command.command_id, raw, key, status, answer)
    return _answer(request, command.command_id, raw, key, 202, answer)


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/objects/{object_type}", status_code=202, response_model=Accepted, responses={201: {"model": Accepted}, 409: {}})
async def create_object(
    request: Request, object_type: str, body: ObjectCreate, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Create a deal, ticket, activity, ... in its type's first stage (or `stage`), linked to users and companies."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"POST /objects/{object_type}")
    if replay is not None:
        return replay
    definition = await _types(request).require(object_type)
    stage = body.stage or definition.initial_stage
    check_stage(definition, stage)
    values = check_properties(definition, body.properties, creating=True)
    object_id = body.id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"footfall:object:{command_id}"))
    if body.id and await _objects(request).get(object_type, object_id) is not None:
        raise ApiError.of(409, "id", "unique", f"{object_type} {object_id!r} exists; PATCH it", id=object_id)
    await _objects(request).check_unique(definition, values, object_id)
    command = ObjectCommand(
        kind="create",
        command_id=command_id,
        object_type=object_type,
        object_id=object_id,
        at=_now(),
        set=values,
        stage=stage,
        closed=definition.is_closed(stage),
        owner=body.owner,
        due_at=body.due_at,
        links=await _links(request, body.links),
    )
    return await _publish(request, [command], wait, idempotency_key, raw, status=201)


@router.get("/objects/{object_type}")
async def list_objects(
    request: Request,
    object_type: str,
    stage: Annotated[str | None, Query(max_length=64)] = None,
    owner: Annotated[str | None, Query(max_length=200, description="exactly this owner ('' for none)")] = None,
    user: Annotated[str | None, Query(max_length=1024, description="linked to this user (a ref)")] = None,
    company: Annotated[str | None, Query(max_length=256, description="linked to this company id")] = None,
    open: Annotated[bool, Query(description="only objects not in a closed stage")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """Objects of a type, most recently updated first, a page at a time (`next_cursor`); filter by stage, owner, links."""
    definition = await _types(request).require(object_type)
    if stage is not None:
        check_stage(definition, stage)
    person = await _people(request).require(parse_ref(user), user) if user else None
    query = ObjectQuery(object_type, stage, owner, person, company, open, limit, cursor)
    objects, next_cursor = await _objects(request).search(query)
    return {"objects": objects, "next_cursor": next_cursor}


@router.get("/objects/{object_type}/{object_id}")
async def get_object(request: Request, object_type: str, object_id: str) -> dict[str, Any]:
    """One object with its stage, owner, due and closed times, properties, linked users and companies."""
    await _types(request).require(object_type)
    found = await _objects(request).with_links(object_type, object_id)
    if found is None:
        raise ApiError.of(404, "id", "exists", f"no {object_type} {object_id!r}")
    return found


@router.patch("/objects/{object_type}/{object_id}", status_code=202, response_model=Accepted)
async def update_object(
    request: Request, object_type: str, object_id: str, body: ObjectPatch, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Set and unset properties, change the owner or the due time (`"due_at": null` clears it)."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"PATCH /objects/{object_type}/{object_id}")
    if replay is not None:
        return replay
    definition = await _types(request).require(object_type)
    values = check_properties(definition, body.set, body.unset)
    await _objects(request).require(object_type, object_id)
    await _objects(request).check_unique(definition, values, object_id)
    command = ObjectCommand(
        kind="update",
        command_id=command_id,
        object_type=object_type,
        object_id=object_id,
        at=_now(),
        set=values,
        unset=list(dict.fromkeys(body.unset)),
        owner=body.owner,
        due_at=body.due_at,
        clear_due="due_at" in body.model_fields_set and body.due_at is None,
    )
    return await _publish(request, [command], wait, idempotency_key, raw)


@router.post("/objects/{object_type}/{object_id}/stage", status_code=202, response_model=Accepted)
async def move_object(
    request: Request, object_type: str, object_id: str, body: StageMove, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Move to a stage of the type's pipeline (a closed stage sets closed_at; an open one clears it). A stage with an
    effect also moves each linked user to its lifecycle stage."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"STAGE /objects/{object_type}/{object_id}")
    if replay is not None:
        return replay
    definition = await _types(request).require(object_type)
    check_stage(definition, body.stage)
    objects = _objects(request)
    await objects.require(object_type, object_id)
    now = _now()
    command = ObjectCommand(
        kind="move",
        command_id=command_id,
        object_type=object_type,
        object_id=object_id,
        at=now,
        stage=body.stage,
        closed=definition.is_closed(body.stage),
    )
    effects: list[Record] = []
    lifecycle_stage = definition.stage_effects.get(body.stage)
    if lifecycle_stage:
        topic = request.app.state.settings.topics.user_commands.name
        for person in await objects.linked_persons(object_type, object_id):
            user_command = UserCommand(
                kind="update",
                command_id=command_id_for(person, command_id),
                person_id=person,
                at=now,
                stage=lifecycle_stage,
                stage_by=f"object:{object_type}:{object_id}",
                stage_reason=f"{object_type} moved to {body.stage}",
            )
            effects.append(Record(topic, person, user_command.model_dump_json().encode()))
    return await _publish(request, [command], wait, idempotency_key, raw, extra=effects)


@router.delete("/objects/{object_type}/{object_id}", status_code=202, response_model=Accepted)
async def delete_object(
    request: Request, object_type: str, object_id: str, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Delete the object and its links (linked users see it deleted on their timeline)."""
    command_id, raw, replay = await _idempotent(request, idempotency_key, f"DELETE /objects/{object_type}/{object_id}")
    if replay is not None:
        return replay
    await _types(request).require(object_type)
    await _objects(request).require(object_type, object_id)
    command = ObjectCommand(kind="delete", command_id=command_id, object_type=object_type, object_id=object_id, at=_now())
    return await _publish(request, [command], wait, idempotency_key, raw)


async def _link_edit(request: Request, object_type: str, object_id: str, body: Links, wait: bool, key: str | None, kind: str):
    command_id, raw, replay = await _idempotent(request, key, f"{kind.upper()} /objects/{object_type}/{object_id}")
    if replay is not None:
        return replay
    await _types(request).require(object_type)
    await _objects(request).require(object_type, object_id)
    if not body.users and not body.companies:
        raise ApiError.of(422, "users", "required", "name at least one user or company")
    links = await _links(request, body)
    command = ObjectCommand(kind=kind, command_id=command_id, object_type=object_type, object_id=object_id, at=_now(), links=links)
    return await _publish(request, [command], wait, key, raw)


@router.post("/objects/{object_type}/{object_id}/links", status_code=202, response_model=Accepted)
async def link_object(
    request: Request, object_type: str, object_id: str, body: Links, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Link users and companies to the object."""
    return await _link_edit(request, object_type, object_id, body, wait, idempotency_key, "link")


@router.post("/objects/{object_type}/{object_id}/unlink", status_code=202, response_model=Accepted)
async def unlink_object(
    request: Request, object_type: str, object_id: str, body: Links, wait: Wait = False, idempotency_key: IdempotencyKey = None
) -> JSONAnswer:
    """Remove links to users and companies (the users and companies stay)."""
    return await _link_edit(request, object_type, object_id, body, wait, idempotency_key, "unlink")


@user_objects_router.get("/users/{ref}/objects")
async def user_objects(
    request: Request,
    ref: str,
    type: Annotated[str, Query(description="deal, ticket, activity or a defined type")],
    stage: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The user's objects of one type, most recently updated first."""
    definition = await _types(request).require(type)
    if stage is not None:
        check_stage(definition, stage)
    person_id = await _people(request).require(parse_ref(ref), ref)
    objects, next_cursor = await _objects(request).search(ObjectQuery(type, stage, user=person_id, limit=limit, cursor=cursor))
    return {"person_id": person_id, "type": type, "objects": objects, "next_cursor": next_cursor}
