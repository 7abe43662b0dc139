"""Flood control: token buckets per write key and per device key, all or nothing per request."""

from __future__ import annotations

import pytest

from ingest.limits import Buckets, Limits
from ingest.responses import Refusal
from ingest.sources import RateLimit, Source


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_is_admitted_then_the_rate_applies(clock):
    buckets = Buckets(RateLimit(events_per_second=2, burst=4), clock=clock)
    assert buckets.admit({"d": 4}) == 0
    assert buckets.admit({"d": 1}) == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.admit({"d": 1}) == 0
    assert buckets.admit({"d": 1}) == pytest.approx(0.5)


def test_buckets_refill_up_to_the_burst_only(clock):
    buckets = Buckets(RateLimit(events_per_second=10, burst=5), clock=clock)
    buckets.admit({"d": 5})
    clock.now += 3600
    assert buckets.admit({"d": 5}) == 0
    assert buckets.admit({"d": 1}) == pytest.approx(0.1)


def test_a_request_is_admitted_whole_or_not_at_all(clock):
    buckets = Buckets(RateLimit(events_per_second=1, burst=2), clock=clock)
    buckets.admit({"hot": 2})
    assert buckets.admit({"calm": 2, "hot": 1}) == pytest.approx(1.0)
    assert buckets.admit({"calm": 2}) == 0  # the refused request took nothing from "calm"


def test_a_request_larger_than_the_burst_spends_a_full_bucket(clock):
    buckets = Buckets(RateLimit(events_per_second=1, burst=10), clock=clock)
    assert buckets.admit({"importer": 2_500}) == 0
    assert buckets.admit({"importer": 1}) == pytest.approx(1.0)
    clock.now += 10
    assert buckets.admit({"importer": 2_500}) == 0


def test_refilled_buckets_are_forgotten_first_when_keys_run_out(clock):
    buckets = Buckets(RateLimit(events_per_second=1, burst=2), max_keys=3, clock=clock)
    buckets.admit({"busy": 2, "idle-1": 1, "idle-2": 1})
    clock.now += 1.5  # the idle buckets are full again, "busy" is not
    buckets.admit({"new": 1})
    assert buckets.admit({"busy": 2}) == pytest.approx(0.5)
    assert len(buckets._buckets) <= 3


def test_when_every_bucket_is_busy_the_oldest_half_is_forgotten(clock):
    buckets = Buckets(RateLimit(events_per_second=0.001, burst=1), max_keys=4, clock=clock)
    buckets.admit({f"d{i}": 1 for i in range(4)})
    buckets.admit({"d4": 1})
    assert list(buckets._buckets) == ["d2", "d3", "d4"]


def refusal(call) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value


def test_a_write_key_over_its_rate_is_429_with_retry_after(clock):
    source = Source(id="web", write_key="k", rate_limit=RateLimit(events_per_second=1, burst=3))
    limits = Limits(default_source=None, default_device=RateLimit(events_per_second=100, burst=100))
    limits.admit_source(source, 3)
    refused = refusal(lambda: limits.admit_source(source, 2))
    assert (refused.status, refused.problems[0].field, refused.headers) == (429, "writeKey", {"Retry-After": "2"})


def test_without_a_limit_a_write_key_is_not_counted():
    limits = Limits(default_source=None, default_device=RateLimit(events_per_second=1, burst=1))
    for _ in range(100):
        limits.admit_source(Source(id="web", write_key="k"), 2_500)


def test_a_hot_device_is_429_and_other_devices_are_not():
    source = Source(id="web", write_key="k", device_rate_limit=RateLimit(events_per_second=0.5, burst=2))
    limits = Limits(default_source=None, default_device=RateLimit(events_per_second=1000, burst=1000))
    limits.admit_devices(source, {"hot": 2})
    refused = refusal(lambda: limits.admit_devices(source, {"hot": 1, "calm": 1}))
    assert (refused.status, refused.problems[0].field, refused.headers) == (429, "anonymousId", {"Retry-After": "2"})
    limits.admit_devices(source, {"calm": 2})


def test_device_buckets_are_per_source():
    limits = Limits(default_source=None, default_device=RateLimit(events_per_second=0.1, burst=1))
    limits.admit_devices(Source(id="web", write_key="k1"), {"d": 1})
    limits.admit_devices(Source(id="ios", write_key="k2"), {"d": 1})
