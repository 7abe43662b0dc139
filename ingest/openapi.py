"""The collector's OpenAPI document (`GET /openapi.json`): every route, its auth, bodies and answers.

The request bodies are the validating models themselves (schemas/tracking.py, schemas/configs.py), so the
document cannot drift from what the collector accepts; the answer models below describe what the handlers
write, and tests/integration/test_collector_openapi.py checks real answers against them.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from schemas.configs import ConfigRequest
from schemas.tracking import CALL_TYPES, MAX_BATCH_BYTES, MAX_EVENT_BYTES, BatchEnvelope, TrackingCall


class FieldProblem(BaseModel):
    """One reason a call or request was refused."""

    field: str = Field(description="the field at fault, dotted for nested ones (e.g. `properties.price`)")
    reason: str = Field(description="why, for people")
    rule: str = Field(description="the rule it broke, stable for machines (e.g. `required`, `max_length`, `invalid_json`)")


class RejectedCall(BaseModel):
    index: int = Field(description="the call's position in `batch`")
    errors: list[FieldProblem]


class Accepted(BaseModel):
    """200: every accepted call is acknowledged by Kafka. A batch also says how many were accepted, and
    which calls were rejected (kept as bad rows, never retried)."""

    success: Literal[True]
    accepted: int | None = Field(None, description="batch only: calls accepted")
    rejected: list[RejectedCall] | None = Field(None, description="batch only: calls refused, by index")


class Refused(BaseModel):
    """4xx/5xx: nothing of the request was accepted. Retry only on 429 and 503 (after `Retry-After`)."""

    success: Literal[False]
    errors: list[FieldProblem]
    accepted: int | None = None
    rejected: list[RejectedCall] | None = None


class ServedConfig(BaseModel):
    variant: str
    value: Any = Field(description="the variant's value: a boolean, the variant key, or its JSON payload")
    version: int
    reason: Literal["rule_match", "override", "rollout_excluded", "default", "disabled"]
    rule: int | None = Field(None, description="the matching (or rollout-excluding) rule's index")


class ConfigsAnswer(BaseModel):
    configs: dict[str, ServedConfig]
    person_id: str | None = Field(None, description="the person the ids map to, when known yet")


class Health(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    kafka: Literal["reachable", "unreachable"]


MODELS: tuple[type[BaseModel], ...] = (
    TrackingCall,
    BatchEnvelope,
    ConfigRequest,
    Accepted,
    Refused,
    ConfigsAnswer,
    Health,
    Readiness,
)

WRITE_KEY = [{"writeKey": []}, {"writeKeyHeader": []}, {"writeKeyQuery": []}, {}]  # {}: the key in the body


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
REFUSALS = {
    "400": _json(Refused, "the body or a call broke a rule; `errors` names each field and rule (kept as bad rows)"),
    "401": _json(Refused, "no write key, or an unknown one"),
    "403": _json(Refused, "a disabled source, or an origin the source does not allow"),
    "408": _json(Refused, "the body did not arrive in time"),
    "413": _json(Refused, f"a call over {MAX_EVENT_BYTES} bytes or a body over {MAX_BATCH_BYTES} bytes"),
    "415": _json(Refused, "a body that is not JSON (any content type is read as JSON)"),
    "429": _json(Refused, "the source's or a device's rate limit; retry after Retry-After", RETRY_AFTER),
    "503": _json(Refused, "Kafka did not acknowledge in time; nothing was accepted, retry after Retry-After", RETRY_AFTER),
}


def _call_route(call_type: str | None) -> dict[str, Any]:
    body = _ref(BatchEnvelope) if call_type is None else _ref(TrackingCall)
    what = "a batch of calls" if call_type is None else f"one `{call_type}` call (its `type` may be left out)"
    return {
        "post": {
            "summary": f"Send {what}",
            "description": "Segment's tracking API. Answered 200 once Kafka acknowledged every accepted call.",
            "tags": ["tracking"],
            "security": WRITE_KEY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}, "text/plain": {"schema": body}}},
            "responses": {"200": _json(Accepted, "accepted"), **REFUSALS},
        }
    }


def _gif(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"image/gif": {}}}


def _pixel_route(path_param: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": "data",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "the call as base64 (standard or URL-safe) JSON; or send its fields as query parameters, "
            "objects dotted (`properties.plan=pro`)",
        },
    ]
    if path_param:
        parameters.append({"name": "call_type", "in": "path", "required": True, "schema": {"enum": list(CALL_TYPES)}})
    return {
        "get": {
            "summary": "A tracking pixel: one call in the URL",
            "tags": ["tracking"],
            "security": WRITE_KEY[:3],
            "parameters": parameters,
            "responses": {
                "200": _gif("accepted"),
                **{status: _gif(refusal["description"]) for status, refusal in REFUSALS.items()},
            },
        }
    }


def _configs_route() -> dict[str, Any]:
    answers = {"200": _json(ConfigsAnswer, "every (or each asked) config's variant for this user, with its reason")}
    answers |= {status: REFUSALS[status] for status in ("400", "401", "403")}
    answers["503"] = _json(Refused, "this worker is still loading the configs; retry after Retry-After", RETRY_AFTER)
    query = [
        {"name": "anonymousId", "in": "query", "schema": {"type": "string"}},
        {"name": "userId", "in": "query", "schema": {"type": "string"}},
        {"name": "keys", "in": "query", "schema": {"type": "string"}, "description": "comma-separated config keys"},
        {"name": "properties", "in": "query", "schema": {"type": "string"}, "description": "a JSON object"},
    ]
    common = {"tags": ["configs"], "security": WRITE_KEY, "responses": answers}
    return {
        "post": {
            "summary": "Which variant of each dynamic config this user gets (recorded as `$config_served` events)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(ConfigRequest)}}},
            **common,
        },
        "get": {"summary": "The same, for clients that can only GET", "parameters": query, **common},
    }


def _plain(summary: str, answers: dict[str, Any], tag: str = "operations") -> dict[str, Any]:
    return {"get": {"summary": summary, "tags": [tag], "responses": answers}}


@cache
def collector_openapi() -> dict[str, Any]:
    """The whole document (built once per process)."""
    _, definitions = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    paths: dict[str, Any] = {f"/v1/{name}": _call_route(name) for name in CALL_TYPES}
    paths |= {f"/v1/{name[0]}": _call_route(name) for name in CALL_TYPES}
    paths |= {"/v1/batch": _call_route(None), "/v1/b": _call_route(None), "/b": _call_route(None)}
    paths |= {"/v1/pixel": _pixel_route(False), "/v1/pixel/{call_type}": _pixel_route(True), "/v1/configs": _configs_route()}
    settings = {"type": "object", "description": "analytics.js settings: integrations, plan and the API host"}
    paths["/v1/projects/{writeKey}/settings"] = {
        "get": {
            "summary": "analytics.js's project settings (the CDN's settings call, answered by the collector)",
            "tags": ["sdk"],
            "parameters": [{"name": "writeKey", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "settings", "content": {"application/json": {"schema": settings}}},
                "401": REFUSALS["401"],
                "403": REFUSALS["403"],
            },
        }
    }
    script = {"description": "the script", "content": {"text/javascript": {"schema": {"type": "string"}}}}
    paths["/analytics.js/v1/{writeKey}/analytics.min.js"] = {
        "get": {
            "summary": "analytics.js (Segment's analytics-next standalone build, served from this host)",
            "tags": ["sdk"],
            "parameters": [{"name": "writeKey", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": script, "404": _json(Refused, "the package is not installed (`make web`)")},
        }
    }
    text = {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    paths["/healthz"] = _plain("Liveness", {"200": _json(Health, "the process answers")})
    paths["/readyz"] = _plain("Readiness: Kafka reachable", {"200": _json(Readiness, "ready"), "503": _json(Readiness, "not ready")})
    paths["/metrics"] = _plain("Prometheus metrics", {"200": text})
    paths["/openapi.json"] = _plain("This document", {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "footfall collector",
            "version": "1",
            "description": "Segment's tracking API (unchanged Segment and RudderStack SDKs work), a pixel, and "
            "dynamic configs. A write key only writes events; every route but the operational ones needs one.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic", "description": "the write key as the Basic auth user, empty password"},
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
                "writeKeyQuery": {"type": "apiKey", "in": "query", "name": "writeKey"},
            },
        },
    }
