"""Processor consumer settings and stall diagnostics.

A processor refreshes topic metadata often enough that a topic missing from the group leader's view at an
assignment (just created, or a restarted broker that had not loaded it yet) gets an owner within seconds: the
leader's refresh sees the partitions and asks for a new assignment. With aiokafka's default of five minutes the
group sat idle that long (RELIABILITY.md, "processors idle after a broker restart")."""

from aiokafka.structs import TopicPartition

from processors.app import create_app
from processors.runtime import fetch_state_of
from schemas.config import FootfallSettings


def test_the_consumer_refreshes_metadata_as_configured(tmp_path):
    settings = FootfallSettings(data_dir=tmp_path, processor_metadata_refresh_seconds=7)
    app = create_app(settings)
    assert app.conf.consumer_metadata_max_age_ms == 7_000


def test_the_default_refresh_is_seconds_not_minutes(tmp_path):
    assert create_app(FootfallSettings(data_dir=tmp_path)).conf.consumer_metadata_max_age_ms <= 15_000


def test_a_stall_diagnostic_never_raises_and_names_the_partition(tmp_path):
    """The stall line carries what faust and aiokafka hold for the partition; before the consumer has started
    (or if the libraries' private state changes shape) it says so instead of failing the stop."""
    app = create_app(FootfallSettings(data_dir=tmp_path))
    described = fetch_state_of(app, TopicPartition("footfall.raw", 2))
    assert described.startswith("footfall.raw[2]: ") and "unknown" in described
