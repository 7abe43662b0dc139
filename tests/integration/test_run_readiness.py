"""`footfall run` says it is running only once every stage can move an event through, and each stage keeps a
readiness check an operator can watch (the processor's next to its metrics, the projector's on its read API)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from tests.infra import free_port
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
WRITE_KEY = "run-write-key"
ADMIN_KEY = f"admin-{uuid.uuid4()}"


def test_running_is_announced_once_every_stage_is_ready_and_an_event_sent_then_is_projected(kafka_bootstrap, tmp_path):
    ports = {name: free_port() for name in ("collector", "read_api", "processor", "webhooks", "segments")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_") and k != "CLICKHOUSE_URL"}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "FOOTFALL_TOPIC_PREFIX": f"test-run-{uuid.uuid4().hex[:8]}",
            "FOOTFALL_PARTITIONS": "2",
            "FOOTFALL_DATA_DIR": str(tmp_path / "data"),  # the projector's own embedded ClickHouse
            "FOOTFALL_COLLECTOR_PORT": str(ports["collector"]),
            "FOOTFALL_READ_API_PORT": str(ports["read_api"]),
            "FOOTFALL_PROCESSOR_METRICS_PORT": str(ports["processor"]),
            "FOOTFALL_WEBHOOKS_METRICS_PORT": str(ports["webhooks"]),
            "FOOTFALL_SEGMENTS_METRICS_PORT": str(ports["segments"]),
            "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=web",
            "FOOTFALL_BATCH_MAX_SECONDS": "0.3",
            "FOOTFALL_ADMIN_KEY": ADMIN_KEY,
        }
    )
    run = subprocess.Popen([sys.executable, "-m", "footfall", "run"], env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    running = threading.Event()

    def read_output() -> None:
        for line in run.stderr:
            lines.append(line)
            if "footfall is running" in line:
                running.set()

    threading.Thread(target=read_output, daemon=True).start()
    try:
        wait_until(running.is_set, 240, what="footfall is running", watch=(run,))
        # At that moment every stage says it is ready: no waiting from here on.
        urls = {
            "projector": f"http://127.0.0.1:{ports['read_api']}/readyz",
            "processor": f"http://127.0.0.1:{ports['processor']}/readyz",
            "collector": f"http://127.0.0.1:{ports['collector']}/readyz",
            "webhooks": f"http://127.0.0.1:{ports['webhooks']}/readyz",  # the dispatcher, started by `footfall run` too
            "segments": f"http://127.0.0.1:{ports['segments']}/readyz",  # the segment evaluator, likewise
        }
        answers = {stage: httpx.get(url, timeout=5) for stage, url in urls.items()}
        assert {stage: answer.status_code for stage, answer in answers.items()} == dict.fromkeys(urls, 200), "".join(lines)
        assert answers["processor"].json() == {"ready": True, "consumer_group": "joined", "tables": "recovered"}
        assert answers["projector"].json()["consumer_group"] == "assigned"
        assert answers["webhooks"].json() == {"ready": True, "definitions": "loaded", "webhooks": "0"}
        assert answers["segments"].json() == {"ready": True, "state": "loaded", "last_step": "ok"}
        assert "footfall_segment_evaluation_seconds" in httpx.get(f"http://127.0.0.1:{ports['segments']}/metrics", timeout=5).text
        assert "footfall_processor_duplicate_events_total" in httpx.get(f"http://127.0.0.1:{ports['processor']}/metrics", timeout=5).text

        sent = httpx.post(
            f"http://127.0.0.1:{ports['collector']}/v1/track",
            json={"anonymousId": "a-1", "event": "E", "messageId": "m-run"},
            auth=(WRITE_KEY, ""),
            timeout=10,
        )
        assert sent.status_code == 200

        def projected() -> bool:
            response = httpx.post(
                f"http://127.0.0.1:{ports['read_api']}/sql",
                json={"query": "SELECT message_id FROM footfall.events"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=10,
            )
            return response.status_code == 200 and response.json()["rows"] == [["m-run"]]

        wait_until(projected, 60, what="the event in events", watch=(run,))
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(90)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
