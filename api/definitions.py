"""The API's side of property definitions: the definitions in force, followed from Kafka, and the checks a
user write goes through (types and constraints: 422; unique values another user holds: 409).

The source of truth is the compacted `property-definitions` topic. Each API process follows it whole in a
background thread (schemas/compacted.py), so a definition written by any process applies everywhere within
a poll interval, and a process that wrote one reads it back before answering (`wait_for_version`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson

from api.catalog import Catalog
from api.errors import ApiError, FieldError
from api.reads import Reader, live_persons_where
from schemas.properties import (
    BUILT_IN,
    ObjectType,
    PropertyDefinition,
    PropertyError,
    check_values,
    definition_key,
    effective,
    unique_values,
)

POLL_INTERVAL_S = 0.2


class Definitions(Catalog[PropertyDefinition]):
    """The property definitions in force in this process, kept current by a follower thread (api/catalog.py);
    each change recomputes the effective definitions of users and companies."""

    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, PropertyDefinition.model_validate_json, "property_definitions")
        self._current: dict[str, PropertyDefinition] = dict(BUILT_IN)
        self._companies: dict[str, PropertyDefinition] = {}

    def _apply(self) -> None:
        records = dict(self._follower.values)
        with self._lock:
            self._records = records
            self._current = effective(records.values())
            self._companies = effective(records.values(), "company")

    def require_loaded(self) -> None:
        """503 until the whole topic was read: checking a write against the built-ins alone would let it through."""
        if not self.loaded:
            raise self.unavailable()

    @property
    def current(self) -> dict[str, PropertyDefinition]:
        with self._lock:
            return self._current

    def current_of(self, object_type: ObjectType) -> dict[str, PropertyDefinition]:
        with self._lock:
            return self._current if object_type == "user" else self._companies

    def record(self, name: str, object_type: ObjectType = "user") -> PropertyDefinition | None:
        """The latest record of a name (a deleted one too), or its built-in default."""
        with self._lock:
            return self._records.get(definition_key(object_type, name)) or (BUILT_IN.get(name) if object_type == "user" else None)

    async def wait_for_version(self, name: str, version: int, timeout_s: float = 10.0, object_type: ObjectType = "user") -> bool:
        deadline = time.monotonic() + timeout_s
        key = definition_key(object_type, name)
        while time.monotonic() < deadline:
            found = self.record(name, object_type)
            if found is not None and found.version >= version and not (found.built_in and key not in self._records):
                return True
            await asyncio.sleep(0.05)
        return False


def field_errors(errors: Iterable[PropertyError], prefix: str = "") -> list[FieldError]:
    """The validator's errors as the API answers them: the property, the rule, and the value's type."""
    return [FieldError(f"{prefix}{e.property}", e.rule, f"{e.property} {e.reason}", {"value_type": e.value_type}) for e in errors]


class PropertyValidator:
    """The hook api/routers/users.py (and companies.py, for company properties) calls on create (partial=False)
    and PATCH (partial=True): 422 errors."""

    def __init__(self, definitions: Definitions, object_type: ObjectType = "user"):
        self.definitions = definitions
        self.object_type = object_type

    def __call__(self, properties: dict[str, Any], partial: bool, unset: Iterable[str] = ()) -> list[FieldError]:
        self.definitions.require_loaded()
        checked = check_values(self.definitions.current_of(self.object_type), properties, unset, creating=not partial)
        return field_errors(checked.errors)


async def check_unique(
    definitions: Definitions, reader: Reader, values: dict[str, Any], person_id: str | None = None, skip: Iterable[str] = ()
) -> None:
    """409 when another user holds a value of a unique property, naming that user (`skip`: checked elsewhere)."""
    errors = []
    for name, value in unique_values(definitions.current, values).items():
        if name in skip:
            continue
        rows = await reader.rows(
            "SELECT person_id FROM "
            + live_persons_where("JSONExtractRaw(properties, {k:String}) = {v:String}")
            + " AND person_id != {p:String} LIMIT 1",
            {"k": name, "v": orjson.dumps(value).decode(), "p": person_id or ""},
        )
        if rows:
            owner = rows[0]["person_id"]
            errors.append(FieldError(name, "unique", f"{name} {value!r} already belongs to user {owner}", {"person_id": owner}))
    if errors:
        raise ApiError(409, errors)
