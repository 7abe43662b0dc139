"""Readiness checks: the processor's (joined its group and recovered its tables since the last rebalance) and
the endpoints that serve it next to the metrics."""

from __future__ import annotations

import asyncio
import io

import faust
import orjson

from footfall.probes import probe_app
from processors.readiness import ProcessorReadiness


def test_a_processor_is_ready_only_once_the_latest_rebalance_recovered_its_tables():
    app = faust.App("readiness-test", broker="kafka://localhost:1")
    readiness = ProcessorReadiness(app)
    assert readiness() == (False, {"consumer_group": "joining", "tables": "waiting for the group"})

    app.rebalancing, app.rebalancing_count = True, 1  # faust: a rebalance started
    assert readiness()[0] is False
    app.rebalancing, app.in_recovery = False, True  # assigned; recovering the tables' changelogs
    assert readiness() == (False, {"consumer_group": "joined", "tables": "recovering"})
    asyncio.run(app.on_rebalance_complete.send())
    app.in_recovery = False
    assert readiness() == (True, {"consumer_group": "joined", "tables": "recovered"})

    app.rebalancing, app.rebalancing_count = True, 2  # another member joined: not ready until this one recovers too
    assert readiness()[0] is False
    app.rebalancing = False
    assert readiness() == (False, {"consumer_group": "joined", "tables": "recovering"})
    asyncio.run(app.on_rebalance_complete.send())
    assert readiness()[0] is True


def call(app, path: str) -> tuple[str, bytes]:
    answer: dict = {}
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
        "SERVER_NAME": "x",
        "SERVER_PORT": "1",
    }
    body = b"".join(app(environ, lambda status, headers: answer.update(status=status)))
    return answer["status"], body


def test_the_probe_endpoints_answer_readiness_health_and_metrics():
    state = {"ready": False}
    app = probe_app(lambda: (state["ready"], {"tables": "recovered" if state["ready"] else "recovering"}))
    status, body = call(app, "/readyz")
    assert (status, orjson.loads(body)) == ("503 Service Unavailable", {"ready": False, "tables": "recovering"})
    state["ready"] = True
    status, body = call(app, "/readyz")
    assert (status, orjson.loads(body)) == ("200 OK", {"ready": True, "tables": "recovered"})
    assert call(app, "/healthz") == ("200 OK", b'{"status":"alive"}')
    status, body = call(app, "/metrics")
    assert status.startswith("200") and b"python_info" in body
