"""Error answers that name the field and the rule (HubSpot's per-property errors), for every failure path.

Body: {"status": "error", "message": "...", "errors": [{"field": "email", "rule": "email", "message": "..."}]}.
A client's input never produces a 5xx: FastAPI's validation errors become 422 with the same shape, and
unknown paths 404, wrong methods 405.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class JSONAnswer(Response):
    """A JSON response written by orjson (datetimes, UUIDs and the like included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@dataclass(frozen=True)
class FieldError:
    """One broken rule: the field (a property name, a body path or a header) and the rule's name."""

    field: str
    rule: str
    message: str
    context: dict[str, Any] = field(default_factory=dict)  # e.g. {"person_id": ...} for a 409

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "rule": self.rule, "message": self.message, **self.context}


class ApiError(Exception):
    """Raised by handlers: the status and the broken rules to answer with."""

    def __init__(self, status: int, errors: list[FieldError], message: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.status = status
        self.errors = errors
        self.message = message or (errors[0].message if errors else "error")
        self.headers = headers

    @classmethod
    def of(cls, status: int, field: str, rule: str, message: str, **context: Any) -> ApiError:
        return cls(status, [FieldError(field, rule, message, context)], message)


def not_found(ref: str) -> ApiError:
    return ApiError.of(404, "ref", "exists", f"no user {ref!r}")


def error_body(status: int, errors: list[FieldError], message: str) -> dict[str, Any]:
    return {"status": "error", "code": status, "message": message, "errors": [e.as_json() for e in errors]}


def _location(loc: tuple) -> str:
    """('body', 'set', 'email') -> 'set.email'; ('query', 'limit') -> 'limit'; ('header', 'idempotency-key')."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    found = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        field_name = _location(tuple(error.get("loc", ())))
        named, colon, rest = message.partition(": ")
        if error.get("type") == "value_error" and colon and not any(c.isspace() for c in named):  # a rule naming its field first
            field_name, message = (f"{field_name}.{named}" if field_name != "body" else named), rest
        found.append(FieldError(field_name, error.get("type", "invalid"), message))
    return found or [FieldError("body", "invalid", "the request is invalid")]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONAnswer:
        return JSONAnswer(error_body(exc.status, exc.errors, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONAnswer:
        errors = validation_errors(exc)
        return JSONAnswer(error_body(422, errors, f"{errors[0].field}: {errors[0].message}"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONAnswer:
        field_name = "method" if exc.status_code == 405 else "path"
        error = FieldError(field_name, "exists" if exc.status_code == 404 else "allowed", str(exc.detail))
        return JSONAnswer(error_body(exc.status_code, [error], str(exc.detail)), exc.status_code, headers=exc.headers)
