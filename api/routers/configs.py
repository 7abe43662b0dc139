"""/api/v1/configs: dynamic configs (create, read, update, disable, delete, versions, per-user overrides), and
/api/v1/users/{ref}/configs: what each config served a user (from the `$config_served` exposures in
ClickHouse) beside what it would serve now (the same evaluator the collector runs), a difference flagged.

Every change is a new version on the `configs` topic (api/configs.py); nothing is rewritten.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.configs import ConfigCatalog
from api.errors import ApiError, FieldError, validation_errors
from api.people import People
from api.user_model import parse_ref
from schemas.configs import EXPOSURE_EVENT, ConfigSpec, ConfigVersion, Override, Subject, serve
from schemas.person_properties import targeting_properties

router = APIRouter(tags=["configs"])
user_configs_router = APIRouter(tags=["users"])

IfMatch = Annotated[
    int | None, Header(alias="If-Match", description="the version this change was made against (412 when it is no longer current)")
]


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str
    expires_at: datetime | None = Field(default=None, description="ISO 8601 with a time zone; absent: until removed")
    reason: str = Field(default="", max_length=1000)


def _catalog(request: Request) -> ConfigCatalog:
    return request.app.state.configs


def version_json(record: ConfigVersion) -> dict[str, Any]:
    return {
        **record.spec.model_dump(mode="json"),
        "version": record.version,
        "change": record.change,
        "changed_at": record.changed_at.isoformat(),
        "deleted": record.deleted,
    }


def _spec(data: dict[str, Any]) -> ConfigSpec:
    """Validate a definition; errors name the field and the rule (422), as for a request body."""
    try:
        return ConfigSpec.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, validation_errors(RequestValidationError(exc.errors(include_url=False)))) from exc


async def _check_references(request: Request, spec: ConfigSpec) -> None:
    """422 naming each rule field that targets a segment or list that does not exist (or was deleted)."""
    found = spec.references()
    if not found:
        return
    live = {
        "segment": await request.app.state.segments.live() if any(k == "segment" for _, k, _ in found) else {},
        "list": await request.app.state.lists.live() if any(k == "list" for _, k, _ in found) else {},
    }
    errors = [FieldError(field, "exists", f"no {kind} {target!r}") for field, kind, target in found if target not in live[kind]]
    if errors:
        raise ApiError(422, errors)


async def _write(request: Request, spec: ConfigSpec, change, expected: int | None = None, deleted: bool = False) -> dict[str, Any]:
    if change in ("created", "updated"):
        await _check_references(request, spec)
    record = await _catalog(request).write(request.app.state.bus, spec, change, expected=expected, deleted=deleted)
    return version_json(record)


# -- the configs ---------------------------------------------------------------------------------------------


@router.get("/configs")
async def list_configs(request: Request, include_deleted: bool = False) -> dict[str, Any]:
    """Every config at its latest version."""
    catalog = _catalog(request)
    await catalog.loaded()
    latest = sorted(catalog.registry.latest.values(), key=lambda v: v.key)
    return {"configs": [version_json(v) for v in latest if include_deleted or not v.deleted]}


@router.post("/configs", status_code=201)
async def create_config(request: Request, spec: Annotated[ConfigSpec, Body()]) -> dict[str, Any]:
    """Create a config (version 1, or the next version of a deleted key). 409 when the key is live."""
    catalog = _catalog(request)
    await catalog.loaded()
    current = catalog.registry.latest.get(spec.key)
    if current is not None and not current.deleted:
        raise ApiError.of(409, "key", "unique", f"config {spec.key!r} exists (version {current.version}); PUT to change it")
    return await _write(request, spec, "created")


@router.get("/configs/{key}")
async def get_config(request: Request, key: str) -> dict[str, Any]:
    return version_json(await _catalog(request).current(key))


@router.put("/configs/{key}")
async def replace_config(request: Request, key: str, spec: Annotated[ConfigSpec, Body()], if_match: IfMatch = None) -> dict[str, Any]:
    """Replace the definition (a new version). Overrides are kept unless the body lists `overrides`."""
    current = await _catalog(request).current(key)
    if spec.key != key:
        raise ApiError.of(422, "key", "matches_path", f"the body's key {spec.key!r} is not {key!r}; keys cannot be renamed")
    if "overrides" not in spec.model_fields_set:
        spec = _spec({**spec.model_dump(), "overrides": [o.model_dump() for o in current.spec.overrides]})
    return await _write(request, spec, "updated", if_match)


@router.patch("/configs/{key}")
async def update_config(
    request: Request, key: str, changes: Annotated[dict[str, Any], Body(examples=[{"enabled": False}])], if_match: IfMatch = None
) -> dict[str, Any]:
    """Change some fields (e.g. `{"enabled": false}`, a new rollout in `rules`): a new version."""
    current = await _catalog(request).current(key)
    if "key" in changes and changes["key"] != key:
        raise ApiError.of(422, "key", "matches_path", "keys cannot be renamed")
    spec = _spec({**current.spec.model_dump(mode="json"), **changes})
    return await _write(request, spec, "updated", if_match)


@router.delete("/configs/{key}")
async def delete_config(request: Request, key: str, if_match: IfMatch = None) -> dict[str, Any]:
    """Stop serving a config: a last version marked deleted (the history stays)."""
    current = await _catalog(request).current(key)
    return await _write(request, current.spec, "deleted", if_match, deleted=True)


@router.get("/configs/{key}/versions")
async def list_versions(request: Request, key: str) -> dict[str, Any]:
    """Every version, oldest first."""
    catalog = _catalog(request)
    await catalog.loaded()
    versions = catalog.registry.versions(key)
    if not versions:
        raise ApiError.of(404, "key", "exists", f"no config {key!r}")
    return {"versions": [version_json(v) for v in versions]}


@router.get("/configs/{key}/versions/{version}")
async def get_version(request: Request, key: str, version: int) -> dict[str, Any]:
    catalog = _catalog(request)
    await catalog.loaded()
    found = catalog.registry.history.get(key, {}).get(version)
    if found is None:
        raise ApiError.of(404, "version", "exists", f"config {key!r} has no version {version}")
    return version_json(found)


@router.put("/configs/{key}/overrides/{ref}")
async def set_override(request: Request, key: str, ref: str, body: OverrideBody, if_match: IfMatch = None) -> dict[str, Any]:
    """Serve `ref` (a userId, anonymousId or person id) one variant whatever the rules say, until `expires_at`."""
    current = await _catalog(request).current(key)
    override = Override(ref=ref, variant=body.variant, expires_at=body.expires_at, reason=body.reason)
    spec = _spec(
        {
            **current.spec.model_dump(),
            "overrides": [*(o.model_dump() for o in current.spec.overrides if o.ref != ref), override.model_dump()],
        }
    )
    return await _write(request, spec, "override_set", if_match)


@router.delete("/configs/{key}/overrides/{ref}")
async def remove_override(request: Request, key: str, ref: str, if_match: IfMatch = None) -> dict[str, Any]:
    current = await _catalog(request).current(key)
    if not any(o.ref == ref for o in current.spec.overrides):
        raise ApiError.of(404, "ref", "exists", f"config {key!r} has no override for {ref!r}")
    return await _write(request, current.spec.without_override(ref), "override_removed", if_match)


# -- the Configs view of a user --------------------------------------------------------------------------------

LAST_SERVED = (
    "SELECT JSONExtractString(properties, 'config_key') AS config_key, "
    "argMax(JSONExtractString(properties, 'variant'), timestamp) AS variant, "
    "argMax(JSONExtractUInt(properties, 'version'), timestamp) AS version, "
    "argMax(JSONExtractString(properties, 'reason'), timestamp) AS reason, "
    "argMax(anonymous_id, timestamp) AS anonymous_id, "
    "max(timestamp) AS last_served_at, min(timestamp) AS first_served_at, count() AS times "
    "FROM {db}.events FINAL "
    "WHERE has({ids:Array(String)}, distinct_id) AND type = 'track' AND event = {event:String} "
    "GROUP BY config_key"
)


async def _last_served(request: Request, distinct_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not distinct_ids:
        return {}
    rows = await request.app.state.reader.rows(LAST_SERVED, {"ids": distinct_ids, "event": EXPOSURE_EVENT})
    return {row.pop("config_key"): row for row in rows}


@user_configs_router.get("/users/{ref}/configs")
async def user_configs(
    request: Request,
    ref: str,
    anonymous_id: Annotated[
        str | None, Query(max_length=400, description="evaluate for this device (default: the one last served each config)")
    ] = None,
) -> dict[str, Any]:
    """Per config: what was last served to this user (variant, version, when, how many recorded exposures;
    repeats within the collectors' window count once) and what would be served now (variant, rule,
    reason). `differs` flags a variant that changed since it was served."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    profile = await people.profile(person_id) or {}
    distinct_ids = profile.get("distinct_ids", [])
    catalog = _catalog(request)
    await catalog.loaded()
    last = await _last_served(request, distinct_ids)
    properties = targeting_properties(profile.get("properties", {}), profile, await _segments_now(request, person_id))
    user_id = profile.get("user_id") or None
    now = datetime.now(UTC)
    configs = []
    for config in catalog.registry.live():
        served_before = last.get(config.key)
        device = anonymous_id or (served_before or {}).get("anonymous_id") or None
        if device is None and user_id is None and distinct_ids:
            device = distinct_ids[0]
        would = serve(config, Subject(device, user_id, person_id, properties), now)
        configs.append(
            {
                "key": config.key,
                "last_served": _last_json(served_before),
                "now": would.answer(),
                "differs": served_before is not None and served_before["variant"] != would.variant,
                "version_changed": served_before is not None and served_before["version"] != would.version,
                "override": next(
                    (o.model_dump(mode="json") for o in config.spec.overrides if o.ref in {person_id, user_id, *distinct_ids}), None
                ),
            }
        )
    return {"person_id": person_id, "configs": configs}


async def _segments_now(request: Request, person_id: str) -> list[str]:
    """The segments the person is in now, by the evaluator's published changes: what the collectors' person-segments say."""
    rows = await request.app.state.reader.rows(
        "SELECT segment_id FROM {db}.segment_members FINAL WHERE person_id = {person:String} AND exited_at IS NULL", {"person": person_id}
    )
    return [row["segment_id"] for row in rows]


def _last_json(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "variant": row["variant"], "version": row["version"], "reason": row["reason"], "at": row["last_served_at"],
        "first_at": row["first_served_at"], "count": row["times"], "anonymous_id": row["anonymous_id"] or None,
    }  # fmt: skip


def _people(request: Request) -> People:
    return People(request.app.state.reader)


async def _override_ref(request: Request, ref: str) -> tuple[str, set[str]]:
    """The ref an override for this user is set on (the userId when the user has one: it survives merges;
    else the person id), and every ref of the user (to remove an override set on any of them)."""
    people = _people(request)
    person_id = await people.require(parse_ref(ref), ref)
    profile = await people.profile(person_id) or {}
    user_id = profile.get("user_id") or None
    # the user id too: an override is set on it at once, while its distinct-id mapping may still be on its way
    return user_id or person_id, {person_id, *(profile.get("distinct_ids") or []), *([user_id] if user_id else [])}


@user_configs_router.put("/users/{ref}/configs/{key}/override")
async def set_user_override(request: Request, ref: str, key: str, body: OverrideBody) -> dict[str, Any]:
    """Override from the user's Configs view: this user gets `variant` until `expires_at`."""
    target, _ = await _override_ref(request, ref)
    return await set_override(request, key, target, body)


@user_configs_router.delete("/users/{ref}/configs/{key}/override")
async def remove_user_override(request: Request, ref: str, key: str) -> dict[str, Any]:
    current = await _catalog(request).current(key)
    _, refs = await _override_ref(request, ref)
    kept = [o for o in current.spec.overrides if o.ref not in refs]
    if len(kept) == len(current.spec.overrides):
        raise ApiError.of(404, "ref", "exists", f"config {key!r} has no override for user {ref!r}")
    return await _write(request, current.spec.model_copy(update={"overrides": kept}), "override_removed")
