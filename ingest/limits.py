"""Flood control: a token bucket per write key, and one per device key, answered with 429 + Retry-After.

Hot keys. Every event of a device goes to one partition (the Kafka key is the device key, and the
stream processors rely on that for per-device order), so a single very hot device — a bot, or an SDK
that sends everything as anonymousId "undefined" — would make one partition, and the processor task
that owns it, lag behind all others. We contain it at the edge with a per-device token bucket and
refuse, rather than with an overflow topic (PostHog's choice): an overflow topic without the key
loses per-device order exactly for the device it diverts, and with the key it is just as hot.

A request is admitted or refused as a whole: when any device key in it is over its budget the
request is answered 429 and nothing of it is written. The SDK retries the same batch later, in
order, so nothing is lost, nothing is duplicated and per-device order holds. The price: a server-side
batch that mixes many users is held back by its one hot user. A single request may spend at most a
bucket's full burst, so a batch larger than the burst can still pass when its device has been quiet.

The buckets live in each worker process (no shared state, no extra hop): with N workers the limits
are up to N times the configured rates. Only the most recent `max_keys` devices are remembered per
source; a bucket that has refilled is dropped first (forgetting it changes nothing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from ingest.responses import Refusal
from ingest.sources import RateLimit, Source


class Buckets:
    """Token buckets by key, all with the same rate and burst."""

    def __init__(self, limit: RateLimit, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.rate = limit.events_per_second
        self.burst = limit.burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, when they were counted]

    def admit(self, counts: Mapping[str, int]) -> float:
        """Take `counts[key]` tokens from each key's bucket if every bucket has them, and answer 0;
        else take nothing and answer how many seconds until they would all have them."""
        now = self.clock()
        wait = 0.0
        takes = []
        for key, count in counts.items():
            bucket = self._refilled(key, now)
            need = min(count, self.burst)
            if bucket[0] < need:
                wait = max(wait, (need - bucket[0]) / self.rate)
            takes.append((bucket, need))
        if wait:
            return wait
        for bucket, need in takes:
            bucket[0] -= need
        return 0.0

    def _refilled(self, key: str, now: float) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            bucket = self._buckets[key] = [float(self.burst), now]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def _forget(self, now: float) -> None:
        """Drop refilled buckets; if every bucket is busy, drop the older half (they start full again)."""
        full = [k for k, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            for key in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[key]


class Limits:
    """The buckets of every source: one for the write key, one per device key."""

    def __init__(self, default_source: RateLimit | None, default_device: RateLimit, max_device_keys: int = 100_000):
        self.default_source = default_source
        self.default_device = default_device
        self.max_device_keys = max_device_keys
        self._sources: dict[str, Buckets | None] = {}
        self._devices: dict[str, Buckets] = {}

    def admit_source(self, source: Source, events: int) -> None:
        if source.id not in self._sources:
            limit = source.rate_limit or self.default_source
            self._sources[source.id] = Buckets(limit, max_keys=1) if limit else None
        buckets = self._sources[source.id]
        if buckets is not None and events and (wait := buckets.admit({source.id: events})):
            raise _too_many("writeKey", "too many events for this write key; slow down", wait)

    def admit_devices(self, source: Source, counts: Mapping[str, int]) -> None:
        buckets = self._devices.get(source.id)
        if buckets is None:
            limit = source.device_rate_limit or self.default_device
            buckets = self._devices[source.id] = Buckets(limit, max_keys=self.max_device_keys)
        if wait := buckets.admit(counts):
            raise _too_many("anonymousId", "too many events for one device (anonymousId, else userId); slow down", wait)


def _too_many(field: str, reason: str, wait_s: float) -> Refusal:
    return Refusal.of(429, field, "rate_limited", reason, {"Retry-After": str(max(1, math.ceil(wait_s)))})
