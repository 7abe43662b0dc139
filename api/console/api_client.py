"""The console's door to the management API: the same app's /api/v1 endpoints, called in process.

The console is a client of the API like any other, so every rule, error and command stays in one place
(api/routers/). httpx's ASGI transport calls the app directly: no socket, no second copy of the logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def field_errors(self) -> dict[str, str]:
        """{field: message} from the API's error body ({"errors": [{"field", "rule", "message"}]})."""
        if self.ok or not isinstance(self.body, dict):
            return {}
        found: dict[str, str] = {}
        for error in self.body.get("errors") or []:
            found.setdefault(str(error.get("field", "")), str(error.get("message", "invalid")))
        return found

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body.get("detail") or f"HTTP {self.status}")
        return f"HTTP {self.status}"


class ConsoleApi:
    """Calls /api/v1 on `app` with the admin key; answers are ApiAnswer, never exceptions for 4xx."""

    def __init__(self, app: Any, admin_key: str):
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://footfall.console/api/v1",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=60,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiAnswer:
        response = await self._client.request(method, path, params=params, json=json, content=content, headers=headers)
        kind = response.headers.get("content-type", "")
        body: Any = response.json() if kind.startswith("application/json") else response.content
        return ApiAnswer(response.status_code, body, dict(response.headers))

    async def get(self, path: str, **params: Any) -> ApiAnswer:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v not in (None, "")})

    async def close(self) -> None:
        await self._client.aclose()
