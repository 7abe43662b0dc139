"""The configs topic as the management API sees it: every version of every config, replicated into this
process (schemas.tail.TopicTail), and the writes that add versions.

A write is a new `ConfigVersion` record (the next version) on the `configs` topic. It is answered once this
process has read its own record back from the topic: then it is what every collector serves too, because
all of them apply the topic in one order (one partition) and the first record of a version wins. Two API
instances racing for the same version both write; the one whose record came second is told 409 and its
record is ignored by every reader.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from api.commands import CommandBus, Record
from api.errors import ApiError
from schemas.config import FootfallSettings
from schemas.configs import ChangeKind, ConfigRegistry, ConfigSpec, ConfigVersion
from schemas.tail import TopicTail


class ConfigCatalog:
    def __init__(self, settings: FootfallSettings):
        self.topic = settings.topics.configs.name
        self.registry = ConfigRegistry()
        self.tail = TopicTail(settings.kafka_bootstrap_servers, [self.topic], self._on_record, "api-configs")
        self._lock = asyncio.Lock()

    def _on_record(self, _topic: str, _key: bytes | None, value: bytes | None) -> None:
        if value is not None:
            self.registry.apply(ConfigVersion.model_validate_json(value))

    def start(self) -> ConfigCatalog:
        self.tail.start()
        return self

    def stop(self) -> None:
        self.tail.stop()

    @property
    def is_loaded(self) -> bool:
        return self.tail.ready.is_set()

    async def loaded(self, timeout_s: float = 10.0) -> None:
        """503 until the copy has read the topic up to where it stood when the process started."""
        if not await asyncio.to_thread(self.tail.ready.wait, timeout_s):
            raise ApiError.of(
                503,
                "configs",
                "loaded",
                "the API is still reading the configs topic; retry",
            )

    async def current(self, key: str) -> ConfigVersion:
        """The latest version of a live config, or 404."""
        await self.loaded()
        found = self.registry.latest.get(key)
        if found is None or found.deleted:
            raise ApiError.of(404, "key", "exists", f"no config {key!r}")
        return found

    async def write(
        self,
        bus: CommandBus,
        spec: ConfigSpec,
        change: ChangeKind,
        *,
        expected: int | None = None,
        deleted: bool = False,
        timeout_s: float = 10.0,
    ) -> ConfigVersion:
        """Append the next version of `spec.key` and wait until it is read back as the latest. `expected`
        (If-Match) must be the current version, else 412."""
        await self.loaded()
        async with self._lock:  # one writer per process; across processes the topic's order decides
            current = self.registry.latest.get(spec.key)
            if expected is not None and (current.version if current else 0) != expected:
                raise ApiError.of(
                    412, "If-Match", "current_version", f"the config is at version {current.version if current else 0}, not {expected}"
                )
            record = ConfigVersion(
                spec=spec,
                version=self.registry.next_version(spec.key),
                change=change,
                changed_at=datetime.now(UTC),
                deleted=deleted,
                change_id=str(uuid.uuid4()),
            )
            await bus.send([Record(self.topic, spec.key, record.model_dump_json().encode())])
            await self._read_back(record, timeout_s)
        return record

    async def targeting(self, kind: str, target_id: str) -> list[str]:
        """The keys of the live configs whose rules target this segment or list (kind "segment" / "list")."""
        await self.loaded()
        return [c.key for c in self.registry.live() if any((k, i) == (kind, target_id) for _, k, i in c.spec.references())]

    async def remove_overrides_of(self, bus: CommandBus, refs: set[str]) -> list[ConfigVersion]:
        """A deleted or erased user keeps no override: each live config that has one for any of `refs` (the
        person id and its distinct ids) gets a new version without it. Run before the delete itself, so a
        retried delete finds nothing left to remove."""
        await self.loaded()
        written = []
        for current in list(self.registry.latest.values()):
            if current.deleted or not any(o.ref in refs for o in current.spec.overrides):
                continue
            spec = current.spec.model_copy(update={"overrides": [o for o in current.spec.overrides if o.ref not in refs]})
            written.append(await self.write(bus, spec, "override_removed", expected=current.version))
        return written

    async def _read_back(self, record: ConfigVersion, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (kept := self.registry.history.get(record.key, {}).get(record.version)) is None:
            if time.monotonic() > deadline:
                raise ApiError.of(
                    503, "configs", "read_back", "the change was written but not read back in time; check its version before retrying"
                )
            await asyncio.sleep(0.01)
        if kept.change_id != record.change_id:
            raise ApiError.of(409, "version", "unique", f"another change took version {record.version} of {record.key!r}; retry")
