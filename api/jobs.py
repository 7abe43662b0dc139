"""Bulk edits as jobs: POST /api/v1/users/bulk answers at once with a job id; the job resolves its users (a list
of refs, or every user a filter matches, page by page) and sends one command per user, in chunks. Progress:
matched and sent are counted here; applied is read from the `user_commands` table the projector writes.

Jobs live in this process (a restart forgets the sending state; the commands already sent stay applied and
countable by job id).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from api.commands import CommandsUnavailable
from api.errors import ApiError
from api.people import People
from api.reads import ReadUnavailable
from api.user_model import UserPatch, delete_records, identifiers_of, parse_ref, update_records
from api.user_query import ListQuery

log = logging.getLogger(__name__)
CHUNK = 500


@dataclass
class BulkEdit:
    job_id: str
    refs: list[str] | None
    query: ListQuery | None
    action: Literal["update", "delete"]
    update: UserPatch | None
    state: Literal["running", "sent", "failed"] = "running"
    matched: int = 0
    sent: int = 0
    not_found: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self, applied: int) -> dict[str, Any]:
        state = "done" if self.state == "sent" and applied >= self.sent else self.state
        return {
            "job_id": self.job_id,
            "state": state,
            "action": self.action,
            "matched": self.matched,
            "sent": self.sent,
            "applied": applied,
            "not_found": self.not_found[:1000],
            "error": self.error,
            "started_at": self.started_at.isoformat(),
        }


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, BulkEdit] = {}
        self._tasks: set[asyncio.Task] = set()

    def get(self, job_id: str) -> BulkEdit | None:
        return self._jobs.get(job_id)

    def start(self, job: BulkEdit, app) -> BulkEdit:
        if job.job_id in self._jobs:
            return self._jobs[job.job_id]
        self._jobs[job.job_id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, app))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: BulkEdit, app) -> None:
        people = People(app.state.reader)
        try:
            async for person_ids in self._persons(job, people):
                job.matched += len(person_ids)
                records = []
                for index, person_id in enumerate(person_ids):
                    command_id = f"{job.job_id}:{job.sent + index}"
                    records += await self._records(job, app, people, person_id, command_id)
                await app.state.bus.send(records)
                job.sent += len(person_ids)
            job.state = "sent"
        except (CommandsUnavailable, ReadUnavailable) as exc:
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("bulk job %s failed: %s", job.job_id, type(exc).__name__)

    async def _records(self, job: BulkEdit, app, people: People, person_id: str, command_id: str):
        topics, now = app.state.settings.topics, datetime.now(UTC)
        if job.action == "delete":
            profile = await people.profile(person_id) or {}
            identifiers = identifiers_of(profile.get("distinct_ids", []), profile.get("email") or None)
            return delete_records(topics, "delete", person_id, identifiers, command_id, now, job_id=job.job_id)
        return update_records(topics, job.update, person_id, None, command_id, now, job_id=job.job_id)

    async def _persons(self, job: BulkEdit, people: People):
        if job.refs is not None:
            for start in range(0, len(job.refs), CHUNK):
                found = []
                for ref in job.refs[start : start + CHUNK]:
                    try:
                        person_id = await people.person_id_of(parse_ref(ref))
                    except ApiError:
                        person_id = None
                    if person_id is None:
                        job.not_found.append(ref)
                    else:
                        found.append(person_id)
                yield list(dict.fromkeys(found))
            return
        query = job.query
        seen: set[str] = set()
        while query is not None:
            users, cursor = await people.search(query)
            ids = [u["person_id"] for u in users if u["person_id"] not in seen]
            seen.update(ids)
            yield ids
            query = ListQuery(**{**query.__dict__, "cursor": cursor}) if cursor else None
