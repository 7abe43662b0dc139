"""`footfall loadgen` against a real collector and broker: every acknowledged call is on the raw topic once."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from datetime import datetime

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from footfall.cli import cli
from footfall.loadgen import run_load
from footfall.traffic import calls
from tests.infra import free_port
from tests.integration.test_collector_support import raw_events
from tests.pipeline import WRITE_KEY, collector, footfall_process, tail, topic_message_ids, wait_until

pytestmark = pytest.mark.integration


def test_batches_and_single_calls_every_acknowledged_call_is_on_the_raw_topic_exactly_once(settings, tmp_path):
    traffic = list(calls(11, events=600, visitors=200))
    with collector(settings, tmp_path / "logs") as url:
        batched = asyncio.run(
            run_load(url, WRITE_KEY, traffic[:500], batch_size=50, rate=0, concurrency=4, acks_path=tmp_path / "acks.csv")
        )
        singles = asyncio.run(
            run_load(url, WRITE_KEY, iter(traffic[500:]), batch_size=0, rate=200, concurrency=4, acks_path=tmp_path / "acks.jsonl")
        )

    assert (batched.sent, batched.acknowledged, batched.requests, dict(batched.rejected), dict(batched.errors)) == (500, 500, 10, {}, {})
    assert (singles.sent, singles.acknowledged, singles.requests, dict(singles.rejected), dict(singles.errors)) == (100, 100, 100, {}, {})
    assert singles.seconds >= 0.4  # 100 calls at 200/s, less the bucket's 10-call burst
    assert len(singles.latencies_ms) == 100 and singles.latency_ms(0.5) <= singles.latency_ms(0.99)
    assert batched.summary.by_type == Counter(c["type"] for c in traffic[:500])
    assert singles.summary.by_type == Counter(c["type"] for c in traffic[500:])

    acked = [message_id for message_id, _ in batched.acks + singles.acks]
    assert sorted(acked) == sorted(c["messageId"] for c in traffic)
    on_topic = Counter(topic_message_ids(settings, settings.topics.raw.name))
    assert on_topic == Counter(acked)  # each acknowledged call exactly once, and nothing else

    # The acks files: every acknowledged messageId with the wall-clock time of its answer.
    with open(tmp_path / "acks.csv") as rows:
        from_csv = {row["message_id"]: float(row["acked_at"]) for row in csv.DictReader(rows)}
    from_jsonl = {row["messageId"]: row["ackedAt"] for row in map(orjson.loads, (tmp_path / "acks.jsonl").read_bytes().splitlines())}
    assert from_csv == pytest.approx(dict(batched.acks), abs=1e-6) and from_jsonl == dict(singles.acks)
    assert all(batched.started_at <= at <= singles.started_at + singles.seconds + 1 for at in (*from_csv.values(), *from_jsonl.values()))

    # sentAt went out as the wall clock at send: the collector kept the simulated time as event time.
    modelled = {c["messageId"]: c for c in traffic}
    for message in raw_events(settings):
        call = modelled[message.value["message_id"]]
        assert message.key == call["anonymousId"]
        assert abs((datetime.fromisoformat(message.value["timestamp"]) - datetime.fromisoformat(call["timestamp"])).total_seconds()) < 5


def test_429_answers_are_retried_after_their_retry_after_until_everything_is_acknowledged(settings, tmp_path):
    settings = settings.model_copy(update={"collector_port": free_port()})
    url = f"http://127.0.0.1:{settings.collector_port}"
    limits = {"FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=test-source", "FOOTFALL_DEVICE_EVENTS_PER_SECOND": "40", "FOOTFALL_DEVICE_BURST": "40"}
    traffic = list(calls(5, events=300, visitors=10))  # few visitors: the hottest one goes over its budget
    with footfall_process("collector", settings, tmp_path / "logs", **limits) as proc:

        def ready() -> bool:
            assert proc.poll() is None, tail(tmp_path / "logs" / "collector.log")
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, what="collector /readyz")
        report = asyncio.run(run_load(url, WRITE_KEY, traffic, batch_size=20, rate=0, concurrency=2, max_retries=100))

    assert report.errors["429"] > 0 and report.retries == report.errors["429"]
    assert report.waited_s >= report.retries * 1.0  # the collector's Retry-After is at least 1 s
    assert (report.sent, report.acknowledged, dict(report.rejected)) == (300, 300, {})
    assert Counter(topic_message_ids(settings, settings.topics.raw.name)) == Counter(c["messageId"] for c in traffic)


def test_the_cli_records_traffic_to_a_file_and_replays_exactly_it(settings, tmp_path, monkeypatch):
    runner = CliRunner()
    recorded = tmp_path / "traffic.jsonl"
    result = runner.invoke(cli, ["loadgen", "--write", str(recorded), "--events", "200", "--seed", "3", "--visitors", "50", "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["calls"] == 200
    written = [orjson.loads(line) for line in recorded.read_bytes().splitlines()]
    assert written == list(calls(3, events=200, visitors=50))

    monkeypatch.setenv("FOOTFALL_WRITE_KEY", WRITE_KEY)  # the key comes from the environment, never printed
    with collector(settings, tmp_path / "logs") as url:
        result = runner.invoke(
            cli,
            [
                "loadgen",
                "--url",
                url,
                "--from",
                str(recorded),
                "--batch-size",
                "25",
                "--rate",
                "0",
                "--acks",
                str(tmp_path / "acks.jsonl"),
                "--json",
                "--no-progress",
            ],
        )
    assert result.exit_code == 0, result.output
    assert WRITE_KEY not in result.output
    report = orjson.loads(result.stdout)
    assert (report["sent"], report["acknowledged"], report["rejected"], report["requests"]) == (200, 200, {}, 8)
    assert report["generated"]["by_type"] == dict(sorted(Counter(c["type"] for c in written).items()))
    acked = [orjson.loads(line)["messageId"] for line in (tmp_path / "acks.jsonl").read_bytes().splitlines()]
    assert Counter(topic_message_ids(settings, settings.topics.raw.name)) == Counter(acked) == Counter(c["messageId"] for c in written)
