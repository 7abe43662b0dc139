"""/api/v1/property-definitions: typed custom properties with constraints (schemas/properties.py).

Every change is a new version of the definition on the compacted `property-definitions` topic (key: the
name), answered once Kafka acknowledged it and this process has read it back. A delete is a version with
`deleted: true`. The default properties are built in: they are listed, can be tightened (PUT), keep their
type, and cannot be deleted. A new or changed definition applies to writes from then on (API, import,
tracking); values already in profiles are not re-checked.

/api/v1/company-property-definitions is the same for company properties (object type `company`, keyed
`company:<name>` on the same topic; no built-ins): the companies API checks its writes against them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.commands import Record
from api.definitions import Definitions
from api.errors import ApiError, FieldError
from schemas.properties import NAME_PATTERN, ObjectType, PropertyDefinition, PropertyType, change_problems


class DefinitionBody(BaseModel):
    """A definition as a client writes it (name from the path on PUT; version, built_in and time are the server's)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=NAME_PATTERN)
    type: PropertyType
    label: str = Field("", max_length=200)
    description: str = Field("", max_length=2000)
    options: list[str] | None = None
    required: bool = False
    unique: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    version: int | None = Field(None, description="PUT: the version being replaced; 409 when it is no longer current")


def _definitions(request: Request) -> Definitions:
    return request.app.state.definitions


def _as_json(definition: PropertyDefinition) -> dict[str, Any]:
    # A user definition answers as it always did; a company one says what it types.
    return definition.model_dump(mode="json", exclude={"deleted"} if definition.object_type != "user" else {"deleted", "object_type"})


def _built(name: str, body: DefinitionBody, version: int, built_in: bool, object_type: ObjectType) -> PropertyDefinition:
    fields = body.model_dump(exclude={"name", "version"})
    try:
        return PropertyDefinition(
            name=name, version=version, built_in=built_in, updated_at=datetime.now(UTC), object_type=object_type, **fields
        )
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            message = str(error["msg"]).removeprefix("Value error, ")
            for part in message.split("; "):
                rule, _, reason = part.partition(": ")
                errors.append(FieldError(".".join(map(str, error["loc"])) or rule, rule if reason else error["type"], reason or part))
        raise ApiError(422, errors) from None


async def _publish(request: Request, definition: PropertyDefinition) -> None:
    definitions = _definitions(request)
    record = Record(definitions.topic, definition.key, definition.model_dump_json().encode())
    await request.app.state.bus.send([record])
    await definitions.wait_for_version(definition.name, definition.version, object_type=definition.object_type)


async def _current(request: Request) -> Definitions:
    definitions = _definitions(request)
    await definitions.ready()
    return definitions


def definitions_router(path: str, object_type: ObjectType, tag: str) -> APIRouter:
    """The definitions routes for one object type (users' at /property-definitions, companies' beside them)."""
    router = APIRouter(tags=[tag])

    async def _in_force(request: Request, name: str) -> PropertyDefinition:
        """The definition in force under this name, or 404."""
        found = (await _current(request)).current_of(object_type).get(name)
        if found is None:
            raise ApiError.of(404, "name", "exists", f"no property definition {name!r}")
        return found

    @router.get(path)
    async def list_definitions(request: Request) -> dict[str, Any]:
        """Every property definition in force: the built-in defaults and the custom ones."""
        definitions = await _current(request)
        return {
            "definitions": [
                _as_json(d) for d in sorted(definitions.current_of(object_type).values(), key=lambda d: (not d.built_in, d.name))
            ]
        }

    @router.post(path, status_code=201)
    async def create_definition(request: Request, body: DefinitionBody) -> ORJSONResponse:
        """Define a custom property (409 when the name is taken, a default property's included)."""
        definitions = await _current(request)
        if body.name is None:
            raise ApiError.of(422, "name", "required", "a definition needs a name")
        existing = definitions.record(body.name, object_type)
        if existing is not None and not existing.deleted:
            raise ApiError.of(409, "name", "unique", f"{body.name} is already defined (version {existing.version}); PUT to change it")
        definition = _built(body.name, body, (existing.version + 1) if existing else 1, built_in=False, object_type=object_type)
        await _publish(request, definition)
        return ORJSONResponse(_as_json(definition), 201)

    @router.get(f"{path}/{{name}}")
    async def get_definition(request: Request, name: str) -> dict[str, Any]:
        return _as_json(await _in_force(request, name))

    @router.put(f"{path}/{{name}}")
    async def replace_definition(request: Request, name: str, body: DefinitionBody) -> dict[str, Any]:
        """Create or replace a definition: the next version. A default property keeps its type."""
        definitions = await _current(request)
        if body.name is not None and body.name != name:
            raise ApiError.of(422, "name", "matches_path", f"the body names {body.name!r}, the path {name!r}")
        record = definitions.record(name, object_type)
        current = None if record is None or record.deleted else record
        if body.version is not None and (current is None or current.version != body.version):
            raise ApiError.of(
                409, "version", "current", f"version {body.version} is not the current one ({current.version if current else 'none'})"
            )
        definition = _built(
            name, body, (record.version + 1) if record else 1, built_in=bool(current and current.built_in), object_type=object_type
        )
        if problems := change_problems(current, definition):
            raise ApiError(422, [FieldError(rule, rule, reason) for rule, reason in problems])
        await _publish(request, definition)
        return _as_json(definition)

    @router.delete(f"{path}/{{name}}")
    async def delete_definition(request: Request, name: str) -> dict[str, Any]:
        """Remove a custom property's definition (its values stay in profiles, unchecked from now on)."""
        current = await _in_force(request, name)
        if current.built_in:
            raise ApiError.of(422, "name", "built_in", f"{name} is a default property: it cannot be deleted")
        gone = current.model_copy(update={"deleted": True, "version": current.version + 1, "updated_at": datetime.now(UTC)})
        await _publish(request, gone)
        return {"name": name, "deleted": True, "version": gone.version}

    return router


router = definitions_router("/property-definitions", "user", "property definitions")
company_router = definitions_router("/company-property-definitions", "company", "company property definitions")
