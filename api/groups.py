"""The API's lifecycle stages, lists and segments: their compacted topics followed in memory (api/catalog.py), and the checks
a user write naming a stage or a list goes through (422 naming the field)."""

from __future__ import annotations

from api.catalog import Catalog
from api.errors import ApiError, FieldError
from api.user_model import UserCreate, UserPatch
from schemas.lists import ListDefinition, live_lists
from schemas.segments import SegmentDefinition, SegmentStatus, live_segments
from schemas.stages import StageDefinition, effective_stages, latest_records


class Stages(Catalog[StageDefinition]):
    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, StageDefinition.model_validate_json, "lifecycle_stages")

    async def current(self) -> list[StageDefinition]:
        """The stages in force, in order."""
        await self.ready()
        return effective_stages(self.records.values())

    async def latest(self) -> dict[str, StageDefinition]:
        """Every stage id's newest record (deleted ones too), the defaults under them: what the next version follows."""
        await self.ready()
        return latest_records(self.records.values())

    async def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in await self.current())


class Lists(Catalog[ListDefinition]):
    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, ListDefinition.model_validate_json, "lists")

    async def live(self) -> dict[str, ListDefinition]:
        await self.ready()
        return live_lists(self.records.values())


async def check_groups(stages: Stages, lists: Lists, body: UserPatch | UserCreate) -> None:
    """422 when a write names a stage or a list that does not exist."""
    errors = []
    if body.stage is not None and body.stage not in await stages.ids():
        errors.append(FieldError("stage", "one_of", f"{body.stage!r} is not a lifecycle stage (GET /api/v1/lifecycle-stages)"))
    edit = getattr(body, "lists", None)
    if edit is not None and (edit.add or edit.remove):
        known = await lists.live()
        errors += [
            FieldError(f"lists.{part}", "exists", f"no list {list_id!r}")
            for part, ids in (("add", edit.add), ("remove", edit.remove))
            for list_id in ids
            if list_id not in known
        ]
    if errors:
        raise ApiError(422, errors)


class Segments(Catalog[SegmentDefinition]):
    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, SegmentDefinition.model_validate_json, "segments")

    async def live(self) -> dict[str, SegmentDefinition]:
        await self.ready()
        return live_segments(self.records.values())


class SegmentStatuses(Catalog[SegmentStatus]):
    """The evaluator's status of each segment (compacted segment-status topic)."""

    def __init__(self, bootstrap_servers: str, topic: str):
        super().__init__(bootstrap_servers, topic, SegmentStatus.model_validate_json, "segment_status")
