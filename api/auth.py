"""The admin key guards every management endpoint: `Authorization: Bearer <key>`.

Missing → 401 (with `WWW-Authenticate: Bearer`), wrong → 403. Compared in constant time over SHA-256
digests (so not even the length leaks); the key is never logged. Write keys are never admin keys: the
composition root refuses to start when the admin key equals a write key.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from api.errors import ApiError, FieldError


class AdminKey:
    def __init__(self, key: str):
        if not key:
            raise ValueError("the admin key is empty")
        self._digest = hashlib.sha256(key.encode()).digest()

    def matches(self, supplied: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(supplied.encode()).digest(), self._digest)

    def __repr__(self) -> str:  # never the key, in a traceback or a log line
        return "AdminKey(***)"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_admin(request: Request) -> None:
    """A FastAPI dependency: the request carries the admin key, or it is refused."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            [_error("missing; send Authorization: Bearer <admin key>")],
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not request.app.state.admin_key.matches(token):
        raise ApiError(403, [_error("not the admin key")])


def _error(message: str) -> FieldError:
    return FieldError("authorization", "admin_key", message)
