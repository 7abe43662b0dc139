"""A processor that cannot write its output stops without committing, and loses nothing.

faust, left to itself, logs a failed send and commits past the message anyway. Here the enriched topic
refuses every message (max.message.bytes far below an event's size, a non-retriable broker error): the worker
must exit with EXIT_AGENT_FAILED, and once the topic accepts again a new worker delivers every event exactly once.
"""

from __future__ import annotations

import httpx
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from footfall.topics import ensure_topics
from processors.app import EXIT_AGENT_FAILED
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration


def set_max_message_bytes(settings, topic: str, value: str | None) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    op = AlterConfigOpType.SET if value else AlterConfigOpType.DELETE
    entry = ConfigEntry("max.message.bytes", value or "", incremental_operation=op)
    for future in admin.incremental_alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])]).values():
        future.result(30)


def test_a_refused_send_stops_the_worker_and_nothing_is_lost(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    enriched = settings.topics.enriched.name
    set_max_message_bytes(settings, enriched, "64")
    calls = [{"type": "track", "event": "Clicked", "anonymousId": f"device-{n % 4}", "messageId": f"refused-{n}"} for n in range(20)]

    with collector(settings, tmp_path / "logs") as url:
        response = httpx.post(f"{url}/v1/batch", json={"batch": calls}, auth=(WRITE_KEY, ""), timeout=30)
        assert response.status_code == 200 and response.json()["accepted"] == len(calls)

        with processor(settings, tmp_path / "logs-1", restart_on_failure=False) as refused:
            exit_code = wait_until(lambda: refused.poll(), 120, what="the worker to stop on the refused send")
        assert exit_code == EXIT_AGENT_FAILED

        set_max_message_bytes(settings, enriched, None)
        with processor(settings, tmp_path / "logs-2") as worker, projector(settings) as live:

            def stored() -> tuple:
                return clickhouse_client.query(f"SELECT count(), uniqExact(message_id) FROM {settings.database}.events FINAL").result_rows[
                    0
                ]

            wait_until(lambda: stored() == (len(calls), len(calls)), 120, what="every event once in ClickHouse", watch=(worker, live))
    log = (tmp_path / "logs-1" / "processor.log").read_text()
    assert "stopping the worker without committing" in log
    assert "refused-" not in log  # the failed message's payload is not logged
