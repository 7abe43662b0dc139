"""`Idempotency-Key`: a retried write answers what the first one answered, and sends nothing again.

The command id is derived from the key and the request's method and path (schemas.user_commands.command_id_for),
so even a retry this process does not remember (after a restart) carries the same command id, and the
projector and the identity sequencer apply a command id once. Answers are remembered here, bounded.
A key reused with a different body is refused (422): it names another request.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError


@dataclass(frozen=True)
class Remembered:
    body_digest: str
    status: int
    answer: dict[str, Any]


class IdempotencyCache:
    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._answers: OrderedDict[str, Remembered] = OrderedDict()

    @staticmethod
    def digest(body: bytes) -> str:
        return hashlib.sha256(body).hexdigest()

    def lookup(self, command_id: str, body: bytes) -> Remembered | None:
        found = self._answers.get(command_id)
        if found is None:
            return None
        if found.body_digest != self.digest(body):
            raise ApiError.of(422, "idempotency-key", "reused", "this Idempotency-Key was used with a different request body")
        self._answers.move_to_end(command_id)
        return found

    def remember(self, command_id: str, body: bytes, status: int, answer: dict[str, Any]) -> None:
        self._answers[command_id] = Remembered(self.digest(body), status, answer)
        self._answers.move_to_end(command_id)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)
