"""The metrics of issue 21: processor restarts by reason, lag per partition, projector freshness."""

from collections import namedtuple

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from processors import metrics as processor_metrics
from projections import metrics as projector_metrics

TP = namedtuple("TP", "topic partition")


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_restarts_are_counted_by_how_the_previous_run_ended(tmp_path):
    assert processor_metrics.record_start(tmp_path) is None  # a first start is no restart
    # the run is killed: it never writes how it ended
    before = sample("footfall_processor_restarts_total", reason="killed")
    assert processor_metrics.record_start(tmp_path) == "killed"
    assert sample("footfall_processor_restarts_total", reason="killed") == before + 1
    # the next run stops itself on a stall
    processor_metrics.record_exit("stall")
    before = sample("footfall_processor_restarts_total", reason="stall")
    assert processor_metrics.record_start(tmp_path) == "stall"
    assert sample("footfall_processor_restarts_total", reason="stall") == before + 1
    # and the one after that stops cleanly
    processor_metrics.record_exit("stopped")
    assert processor_metrics.record_start(tmp_path) == "stopped"
    assert orjson.loads((tmp_path / "last-exit").read_bytes()) == {"state": "running", "restarts": {"killed": 1, "stall": 1, "stopped": 1}}


def test_restart_counts_carry_over_to_the_next_process(tmp_path):
    """A new process starts its counter from the saved totals, so the series keeps growing across restarts."""
    (tmp_path / "last-exit").write_bytes(orjson.dumps({"state": "stall", "restarts": {"stall": 4, "killed": 2}}))
    before = {r: sample("footfall_processor_restarts_total", reason=r) for r in ("stall", "killed")}
    assert processor_metrics.record_start(tmp_path) == "stall"
    assert sample("footfall_processor_restarts_total", reason="stall") == before["stall"] + 5
    assert sample("footfall_processor_restarts_total", reason="killed") == before["killed"] + 2


def test_an_unreadable_marker_counts_as_killed(tmp_path):
    (tmp_path / "last-exit").write_text("running")  # e.g. written by an older version
    assert processor_metrics.record_start(tmp_path) == "killed"


@pytest.mark.parametrize(("marker", "reason"), [(None, None), ("", "killed"), ("running", "killed"), ("continuity", "continuity")])
def test_previous_run_ending(marker, reason):
    assert processor_metrics.previous_run_ending(marker) == reason


def test_consumer_lag_per_owned_partition_and_revoked_ones_disappear():
    a, b = TP("footfall.raw", 0), TP("footfall.raw", 1)
    processor_metrics.set_consumer_lag({a: 10, b: 7}, {a: 25, b: 7})
    assert sample("footfall_processor_consumer_lag", topic="footfall.raw", partition="0") == 15
    assert sample("footfall_processor_consumer_lag", topic="footfall.raw", partition="1") == 0
    processor_metrics.set_consumer_lag({b: 7}, {b: 9})  # partition 0 revoked
    assert REGISTRY.get_sample_value("footfall_processor_consumer_lag", {"topic": "footfall.raw", "partition": "0"}) is None
    assert sample("footfall_processor_consumer_lag", topic="footfall.raw", partition="1") == 2


def test_freshness_is_one_observation_per_event_from_received_at():
    count = sample("footfall_projector_freshness_seconds_count")
    within_1s = sample("footfall_projector_freshness_seconds_bucket", le="1.0")
    within_60s = sample("footfall_projector_freshness_seconds_bucket", le="60.0")
    now = 1_700_000_000.0
    projector_metrics.observe_freshness([int(now * 1000) - 500, int(now * 1000) - 30_000, int(now * 1000) + 5], now=now)
    assert sample("footfall_projector_freshness_seconds_count") == count + 3
    assert sample("footfall_projector_freshness_seconds_bucket", le="1.0") == within_1s + 2  # 0.5 s and a clock 5 ms ahead
    assert sample("footfall_projector_freshness_seconds_bucket", le="60.0") == within_60s + 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from([0.0, 0.1, 1.0, 60.0, 21600.0]), st.floats(0, 50_000)), max_size=200))
def test_freshness_in_bulk_equals_one_observe_per_event(ages):
    """The batch is bucketed in one step (observe_freshness); it must count exactly what observe() would."""
    reference = Histogram(
        "reference_seconds", "", buckets=projector_metrics.FRESHNESS_SECONDS._upper_bounds[:-1], registry=CollectorRegistry()
    )
    now = 1_700_000_000.0
    received = [int(now * 1000 - age * 1000) for age in ages]
    before = {(s.name, s.labels.get("le")): s.value for s in projector_metrics.FRESHNESS_SECONDS.collect()[0].samples}
    projector_metrics.observe_freshness(received, now=now)
    for at in received:
        reference.observe(max(0.0, (now * 1000 - at) / 1000))
    got = {
        (s.name, s.labels.get("le")): s.value - before[(s.name, s.labels.get("le"))]
        for s in projector_metrics.FRESHNESS_SECONDS.collect()[0].samples
        if not s.name.endswith("_created")
    }
    want = {
        (s.name.replace("reference", "footfall_projector_freshness"), s.labels.get("le")): s.value
        for s in reference.collect()[0].samples
        if not s.name.endswith("_created")
    }
    assert got == pytest.approx(want)
