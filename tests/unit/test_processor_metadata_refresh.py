"""A processor refreshes topic metadata often enough that a topic missing from the group leader's view at an
assignment (just created, or a restarted broker that had not loaded it yet) gets an owner within seconds: the
leader's refresh sees the partitions and asks for a new assignment. With aiokafka's default of five minutes the
group sat idle that long (RELIABILITY.md, "processors idle after a broker restart")."""

from processors.app import create_app
from schemas.config import FootfallSettings


def test_the_consumer_refreshes_metadata_as_configured(tmp_path):
    settings = FootfallSettings(data_dir=tmp_path, processor_metadata_refresh_seconds=7)
    app = create_app(settings)
    assert app.conf.consumer_metadata_max_age_ms == 7_000


def test_the_default_refresh_is_seconds_not_minutes(tmp_path):
    assert create_app(FootfallSettings(data_dir=tmp_path)).conf.consumer_metadata_max_age_ms <= 15_000
