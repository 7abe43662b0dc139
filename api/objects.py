"""Deals, tickets, activities and other objects as the API shows them: the object types (followed from their
compacted topic, api/catalog.py), request bodies, and reads from `objects` and `object_links`.

The list pages with a keyset cursor (updated_at, object id), as the companies list does; its SQL is fixed
fragments, every value a server-side parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.catalog import Catalog
from api.definitions import field_errors
from api.errors import ApiError, FieldError
from api.keyset import Keyset
from api.reads import Reader
from schemas.objects import OBJECT_ID_MAX, ObjectTypeDefinition, effective_types, out_of_range
from schemas.properties import NAME_PATTERN, PropertyDefinition, check_values, unique_values

ObjectId = Annotated[str, Field(min_length=1, max_length=OBJECT_ID_MAX, pattern=r"^[^/\x00-\x1f]+$")]
Ref = Annotated[str, Field(min_length=1, max_length=1024)]
MAX_PROPERTIES = 200
_NAME = re.compile(NAME_PATTERN)


class ObjectTypes(Catalog[ObjectTypeDefinition]):
    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, ObjectTypeDefinition.model_validate_json, "object_types")

    async def current(self) -> dict[str, ObjectTypeDefinition]:
        await self.ready()
        return effective_types(self.records.values())

    async def require(self, name: str) -> ObjectTypeDefinition:
        found = (await self.current()).get(name)
        if found is None:
            raise ApiError.of(404, "type", "exists", f"no object type {name!r} (GET /api/v1/object-types)")
        return found


class ObjectTypeBody(BaseModel):
    """A type's definition as PUT /object-types/{name} takes it (the name is the path's)."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=200)
    stages: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=50, description="pipeline order; new objects start in the first"
    )
    closed_stages: list[str] = Field(default_factory=list, max_length=50, description="entering one sets closed_at")
    properties: list[PropertyDefinition] = Field(
        default_factory=list, max_length=500, description="as /api/v1/property-definitions takes them"
    )
    stage_effects: dict[str, str] = Field(default_factory=dict, description="stage → the lifecycle stage its linked users move to")


class Links(BaseModel):
    """Users (refs: person id, user_id:<id>, email:<address>, distinct_id:<id>) and company ids."""

    model_config = ConfigDict(extra="forbid")

    users: list[Ref] = Field(default_factory=list, max_length=100)
    companies: list[ObjectId] = Field(default_factory=list, max_length=100)


def _due_in_range(value: datetime | None) -> datetime | None:
    """Within what a DateTime64(3) column holds (1900-2299): a time beyond it would be refused by ClickHouse later."""
    if value is not None and not (DUE_MIN <= (value if value.tzinfo else value.replace(tzinfo=UTC)) < DUE_MAX):
        raise ValueError("a due time between 1900 and 2299")
    return value


DUE_MIN, DUE_MAX = datetime(1900, 1, 2, tzinfo=UTC), datetime(2299, 12, 30, tzinfo=UTC)
DueAt = Annotated[datetime | None, AfterValidator(_due_in_range)]


class ObjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ObjectId | None = Field(None, description="default: a new UUID")
    stage: Annotated[str, Field(max_length=64)] | None = Field(None, description="default: the type's first stage")
    owner: Annotated[str, Field(max_length=200)] | None = None
    due_at: DueAt = None
    properties: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES)
    links: Links = Field(default_factory=Links)


class ObjectPatch(BaseModel):
    """`set` writes properties (None removes one), `unset` removes them; owner "" clears it; due_at null clears it."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES)
    unset: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=MAX_PROPERTIES)
    owner: Annotated[str, Field(max_length=200)] | None = None
    due_at: DueAt = None


class StageMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Annotated[str, Field(min_length=1, max_length=64)]


def check_stage(definition: ObjectTypeDefinition, stage: str) -> None:
    if stage not in definition.stages:
        raise ApiError.of(422, "stage", "one_of", f"{stage!r} is not a stage of {definition.name}: {', '.join(definition.stages)}")


def check_properties(definition: ObjectTypeDefinition, set_: dict[str, Any], unset: list[str] = (), creating: bool = False) -> dict:
    """The type's property definitions, per property (422 naming each property and its rule); the values normalised."""
    names = [
        FieldError(f"properties.{name}", "name", "a property name is 1-100 letters, digits, _ . - and starts with a letter or _")
        for name in [*set_, *unset]
        if not _NAME.match(name)
    ]
    too_big = [FieldError(f"properties.{name}", "type", "integers must fit in 64 bits") for name, v in set_.items() if out_of_range(v)]
    if names or too_big:
        raise ApiError(422, names + too_big)
    checked = check_values(definition.definitions, set_, unset, creating=creating)
    if checked.errors:
        raise ApiError(422, field_errors(checked.errors, "properties."))
    return checked.values


OBJECT_COLUMNS = "object_type, object_id, stage, owner, properties, due_at, closed_at, created_at, updated_at"


def object_json(row: dict[str, Any]) -> dict[str, Any]:
    found = dict(row)
    found["id"] = found.pop("object_id")
    found["type"] = found.pop("object_type")
    found["properties"] = orjson.loads(row["properties"] or "{}")
    return found


KEYSET = Keyset("updated_at", "DateTime64(3, 'UTC')", "object_id", descending=True)  # most recently updated first


@dataclass(frozen=True)
class ObjectQuery:
    object_type: str
    stage: str | None = None
    owner: str | None = None
    user: str | None = None  # a person id
    company: str | None = None
    open_only: bool = False
    limit: int = 50
    cursor: str | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        """Newest updated first; ties by object id."""
        conditions = ["object_type = {t:String}"]
        parameters: dict[str, Any] = {"t": self.object_type, "limit": self.limit + 1}
        if self.stage is not None:
            conditions.append("stage = {stage:String}")
            parameters["stage"] = self.stage
        if self.owner is not None:
            conditions.append("owner = {owner:String}")
            parameters["owner"] = self.owner
        if self.open_only:
            conditions.append("closed_at IS NULL")
        for kind, value in (("user", self.user), ("company", self.company)):
            if value is not None:
                conditions.append(
                    f"object_id IN (SELECT object_id FROM {{db}}.object_links FINAL WHERE object_type = {{t:String}} "
                    f"AND link_kind = '{kind}' AND link_id = {{{kind}:String}})"
                )
                parameters[kind] = value
        if self.cursor:
            conditions.append(KEYSET.after(self.cursor, parameters))
        return (
            f"SELECT {OBJECT_COLUMNS} FROM {{db}}.objects FINAL WHERE {' AND '.join(conditions)} ORDER BY {KEYSET.order_by()} LIMIT {{limit:UInt32}}"
        ), parameters


class Objects:
    def __init__(self, reader: Reader):
        self.reader = reader

    async def get(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        rows = await self.reader.rows(
            f"SELECT {OBJECT_COLUMNS} FROM {{db}}.objects FINAL WHERE object_type = {{t:String}} AND object_id = {{i:String}}",
            {"t": object_type, "i": object_id},
        )
        return object_json(rows[0]) if rows else None

    async def require(self, object_type: str, object_id: str) -> dict[str, Any]:
        found = await self.get(object_type, object_id)
        if found is None:
            raise ApiError.of(404, "id", "exists", f"no {object_type} {object_id!r}")
        return found

    async def with_links(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        """The object, its linked users (with email and name) and companies (with name)."""
        found = await self.get(object_type, object_id)
        if found is None:
            return None
        parameters = {"t": object_type, "i": object_id}
        found["users"] = await self.reader.rows(
            "SELECT l.link_id AS person_id, l.linked_at AS linked_at, p.email AS email, p.name AS name "
            "FROM {db}.object_links AS l FINAL LEFT JOIN (SELECT person_id, email, name FROM {db}.persons FINAL WHERE person_id IN "
            "(SELECT link_id FROM {db}.object_links FINAL WHERE object_type = {t:String} AND object_id = {i:String} AND link_kind = 'user')) AS p "
            "ON l.link_id = p.person_id WHERE l.object_type = {t:String} AND l.object_id = {i:String} AND l.link_kind = 'user' "
            "ORDER BY l.linked_at, l.link_id LIMIT 1000",
            parameters,
        )
        found["companies"] = await self.reader.rows(
            "SELECT l.link_id AS company_id, l.linked_at AS linked_at, c.name AS name "
            "FROM {db}.object_links AS l FINAL LEFT JOIN (SELECT company_id, name FROM {db}.companies FINAL WHERE company_id IN "
            "(SELECT link_id FROM {db}.object_links FINAL WHERE object_type = {t:String} AND object_id = {i:String} AND link_kind = 'company')) AS c "
            "ON l.link_id = c.company_id WHERE l.object_type = {t:String} AND l.object_id = {i:String} AND l.link_kind = 'company' "
            "ORDER BY l.linked_at, l.link_id LIMIT 1000",
            parameters,
        )
        return found

    async def linked_persons(self, object_type: str, object_id: str) -> list[str]:
        rows = await self.reader.rows(
            "SELECT link_id FROM {db}.object_links FINAL WHERE object_type = {t:String} AND object_id = {i:String} AND link_kind = 'user'",
            {"t": object_type, "i": object_id},
        )
        return [r["link_id"] for r in rows]

    async def search(self, query: ObjectQuery) -> tuple[list[dict[str, Any]], str | None]:
        sql, parameters = query.sql()
        rows = await self.reader.rows(sql, parameters)
        page = rows[: query.limit]
        return [object_json(r) for r in page], KEYSET.next_cursor(page[-1]) if len(rows) > query.limit else None

    async def check_unique(self, definition: ObjectTypeDefinition, values: dict[str, Any], object_id: str) -> None:
        """409 when another object of the type holds a value of one of its unique properties, naming that object."""
        errors = []
        for name, value in unique_values(definition.definitions, values).items():
            rows = await self.reader.rows(
                "SELECT object_id FROM {db}.objects FINAL WHERE object_type = {t:String} "
                "AND JSONExtractRaw(properties, {k:String}) = {v:String} AND object_id != {i:String} LIMIT 1",
                {"t": definition.name, "k": name, "v": orjson.dumps(value).decode(), "i": object_id},
            )
            if rows:
                holder = rows[0]["object_id"]
                message = f"{name} {value!r} already belongs to {definition.name} {holder}"
                errors.append(FieldError(f"properties.{name}", "unique", message, {"id": holder}))
        if errors:
            raise ApiError(409, errors)

    async def applied(self, command_id: str) -> bool:
        rows = await self.reader.rows(
            "SELECT 1 AS applied FROM {db}.object_commands WHERE command_id = {c:String} LIMIT 1", {"c": command_id}
        )
        return bool(rows)


def type_errors(exc: ValueError) -> ApiError:
    return ApiError(422, [FieldError("body", "type_definition", str(exc)[:1000])])
