"""The collector's answers: JSON that names the field at fault, the 1×1 GIF, and refusals as exceptions
so that handlers read as a straight sequence of steps."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.responses import Response

from schemas.bad_rows import Problem

# The smallest transparent 1×1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, max-age=0"}


class Refusal(Exception):
    """A request the collector does not take, with the status and the problems to answer."""

    def __init__(self, status: int, problems: list[Problem], headers: dict[str, str] | None = None):
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.status = status
        self.problems = problems
        self.headers = headers

    @classmethod
    def of(cls, status: int, field: str, rule: str, reason: str, headers: dict[str, str] | None = None) -> Refusal:
        return cls(status, [Problem(field=field, rule=rule, reason=reason)], headers)

    def response(self) -> Response:
        return error_response(self.status, self.problems, self.headers)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def problem_list(problems: list[Problem]) -> list[dict[str, str]]:
    return [{"field": p.field, "reason": p.reason, "rule": p.rule} for p in problems]


def error_response(status: int, problems: list[Problem], headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"success": False, "errors": problem_list(problems)}, headers)


def gif_response(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The pixel's answer; a refusal's headers (Retry-After on 429 and 503) come along."""
    return Response(PIXEL_GIF, status_code=status, media_type="image/gif", headers={**NO_STORE, **(headers or {})})
