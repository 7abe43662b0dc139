"""Rebuild every projection from Kafka into a fresh database, then switch reads to it.

Kafka is the source of truth, so the tables can always be rebuilt: a projector with a consumer group of
its own reads every topic from the beginning into `<database>__replay` until it has caught up with the
end offsets taken at the start, then the databases are renamed (the old one is kept as
`<database>__before_replay_<time>`) and the views re-created. Run it while the projector is stopped (the
collector and the processors may keep running: whatever arrives meanwhile waits in Kafka).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from projections.clickhouse import create_views, ddl, migrate
from projections.projector import Projector
from schemas.config import FootfallSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayReport:
    database: str
    previous: str | None
    messages: int
    seconds: float


def end_offsets(settings: FootfallSettings, topics: list[str]) -> dict[tuple[str, int], int]:
    """Where each partition of the projected topics ends now: the replay's finish line."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"replay-probe-{uuid.uuid4()}"})
    try:
        ends = {}
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=30).topics[topic].partitions:
                ends[(topic, partition)] = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1]
        return {position: end for position, end in ends.items() if end > 0}
    finally:
        consumer.close()


def replay(settings: FootfallSettings, client: Client, switch: bool = True, timeout_s: float = 3600) -> ReplayReport:
    started = time.monotonic()
    staging = f"{settings.database}__replay"
    cluster = settings.clickhouse_cluster
    ddl(client, f"DROP DATABASE IF EXISTS {staging}", cluster)
    migrate(client, staging, cluster)
    projector = Projector(
        settings.model_copy(update={"database": staging}),
        client,
        group_id=f"{settings.topic_prefix}-replay-{uuid.uuid4().hex[:8]}",
        replaying=True,
    )
    finish = end_offsets(settings, list(projector.handlers))
    thread = threading.Thread(target=projector.run, name="replay", daemon=True)
    thread.start()
    try:
        while any(projector.committed.get(position, 0) < end for position, end in finish.items()):
            if not thread.is_alive():
                raise RuntimeError("the replay's projector stopped before catching up")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the replay did not catch up within {timeout_s}s")
            time.sleep(0.2)
    finally:
        projector.stop()
        thread.join(60)
    previous = None
    if switch:
        previous = f"{settings.database}__before_replay_{datetime.now(UTC):%Y%m%dT%H%M%S}"
        if client.query(
            "SELECT count() FROM system.databases WHERE name = {name:String}", parameters={"name": settings.database}
        ).result_rows[0][0]:
            ddl(client, f"RENAME DATABASE {settings.database} TO {previous}", cluster)
            create_views(client, previous, cluster)
        else:
            previous = None
        ddl(client, f"RENAME DATABASE {staging} TO {settings.database}", cluster)
        create_views(client, settings.database, cluster)
    return ReplayReport(settings.database if switch else staging, previous, sum(finish.values()), time.monotonic() - started)
