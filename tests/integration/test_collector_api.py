"""The collector's HTTP API against the real broker: what each request gets back, and what Kafka then holds."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
from collections import Counter
from datetime import datetime

import httpx
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from ingest import tracking
from ingest.privacy import hash_email
from ingest.responses import PIXEL_GIF
from schemas.events import RawEvent
from schemas.tracking import MAX_BATCH_EVENTS
from tests.integration.test_collector_support import (
    NO_TESTCLIENT_WARNING,
    WRITE_KEY,
    bad_rows,
    collector_app,
    raw_events,
    running_collector,
)

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]
AUTH = (WRITE_KEY, "")


def call(call_type: str, n: int = 1, **extra) -> dict:
    return {
        "type": call_type,
        "anonymousId": f"anon-{n}",
        "userId": f"user-{n}",
        "event": "Signed Up",
        "groupId": "g",
        "previousId": f"prev-{n}",
        "messageId": f"m-{call_type}-{n}",
        **extra,
    }


def test_every_route_takes_its_calls_and_kafka_has_them_keyed_by_device(collector_settings, tmp_path):
    routes = {
        "track": ("/v1/track", "/v1/t"),
        "identify": ("/v1/identify", "/v1/i"),
        "page": ("/v1/page", "/v1/p"),
        "screen": ("/v1/screen", "/v1/s"),
        "group": ("/v1/group", "/v1/g"),
        "alias": ("/v1/alias", "/v1/a"),
    }
    with running_collector(collector_settings, tmp_path) as client:
        n = 0
        for call_type, paths in routes.items():
            for path in paths:
                n += 1
                body = call(call_type, n, type="ignored: the route names the type")
                response = client.post(path, json=body, auth=AUTH)
                assert (response.status_code, response.json()) == (200, {"success": True}), path
        for path in ("/v1/batch", "/v1/b", "/b"):
            n += 1
            response = client.post(path, json={"batch": [call("track", n), call("identify", n)]}, auth=AUTH)
            assert response.json() == {"success": True, "accepted": 2, "rejected": []}

    events = raw_events(collector_settings)
    assert Counter(e.value["type"] for e in events) == {"track": 5, "identify": 5, "page": 2, "screen": 2, "group": 2, "alias": 2}
    for message in events:
        event = RawEvent.model_validate(message.value)
        assert message.key == event.anonymous_id == event.device_key
        assert event.source_id == "web"
    assert {e.value["message_id"] for e in events} >= {"m-track-1", "m-track-2", "m-alias-12", "m-identify-15"}


def test_keys_land_on_the_partition_javas_partitioner_picks(collector_settings, tmp_path):
    with running_collector(collector_settings, tmp_path) as client:
        calls = [{"type": "identify", "userId": f"only-user-{i}"} for i in range(12)]
        calls += [{"type": "identify", "userId": "u", "anonymousId": f"device-{i}"} for i in range(12)]
        assert client.post("/v1/batch", json={"batch": calls}, auth=AUTH).status_code == 200
    partitions = list(range(collector_settings.partitions))
    for message in raw_events(collector_settings):
        expected_key = message.value["anonymous_id"] or message.value["user_id"]
        assert message.key == expected_key
        assert message.partition == DefaultPartitioner()(expected_key.encode(), partitions, partitions)


def test_single_event_requests_from_many_clients_share_envelopes_and_each_is_answered_once_kafka_has_it(collector_settings, tmp_path):
    """200 concurrent single-event requests in one event loop: each 200 only once its envelope is acknowledged
    (its event is then readable), and far fewer records than events, each on its devices' partition."""
    settings = collector_settings.model_copy(update={"collector_flush_seconds": 0.05})
    app = collector_app(settings, tmp_path)

    async def send() -> list[httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://collector") as client,
        ):
            return await asyncio.gather(*(client.post("/v1/track", json=call("track", n), auth=AUTH) for n in range(200)))

    answers = asyncio.run(send())
    assert [(r.status_code, r.json()) for r in answers] == [(200, {"success": True})] * 200
    events = raw_events(settings)  # read_all checks each event's partition against its device key
    assert sorted(e.value["message_id"] for e in events) == sorted(f"m-track-{n}" for n in range(200))
    records = {(e.partition, e.offset) for e in events}
    assert len(records) < 50


def test_browser_and_sdk_ways_of_sending_are_accepted(collector_settings, tmp_path):
    with running_collector(collector_settings, tmp_path) as client:
        beacon = orjson.dumps({**call("track", 1), "writeKey": WRITE_KEY})
        assert client.post("/v1/t", content=beacon, headers={"Content-Type": "text/plain;charset=UTF-8"}).status_code == 200
        zipped = gzip.compress(orjson.dumps({"batch": [call("page", 2)]}))
        response = client.post("/v1/batch", content=zipped, headers={"Content-Encoding": "gzip", "X-Write-Key": WRITE_KEY})
        assert response.status_code == 200
        assert client.post(f"/v1/identify?writeKey={WRITE_KEY}", json=call("identify", 3)).status_code == 200
    assert sorted(e.value["type"] for e in raw_events(collector_settings)) == ["identify", "page", "track"]


def test_a_batch_keeps_valid_calls_and_dead_letters_each_invalid_one_with_its_reason(collector_settings, tmp_path):
    body = {
        "batch": [call("track", 1), {"type": "track", "userId": "u"}, "not a call", call("identify", 2, context={"locale": "fr"})],
        "context": {"locale": "en", "library": {"name": "server-batcher"}},
        "sentAt": "2026-03-01T10:00:00Z",
    }
    with running_collector(collector_settings, tmp_path) as client:
        before = datetime.now().astimezone()
        response = client.post("/v1/batch", json=body, auth=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "accepted": 2,
        "rejected": [
            {"index": 1, "errors": [{"field": "event", "reason": "required for track", "rule": "required"}]},
            {"index": 2, "errors": [{"field": "event", "reason": "expected a JSON object, got str", "rule": "object_type"}]},
        ],
    }
    contexts = {e.value["type"]: e.value["context"] for e in raw_events(collector_settings)}
    assert contexts["track"] == {"locale": "en", "library": {"name": "server-batcher"}}
    assert contexts["identify"] == {"locale": "fr", "library": {"name": "server-batcher"}}
    rows = sorted((m.value for m in bad_rows(collector_settings)), key=lambda row: row["index"])
    assert [(r["index"], r["problems"][0]["field"], r["source_id"], r["stage"]) for r in rows] == [
        (1, "event", "web", "collector"),
        (2, "event", "web", "collector"),
    ]
    assert orjson.loads(rows[0]["payload"]) == {"type": "track", "userId": "u"}
    assert all(datetime.fromisoformat(r["received_at"]) >= before for r in rows)


def test_refused_requests_are_answered_with_the_field_and_bodies_kept_on_the_dead_letter_topic(collector_settings, tmp_path):
    with running_collector(collector_settings, tmp_path) as client:
        answers = {
            "single invalid": client.post("/v1/track", json={"userId": "u"}, auth=AUTH),
            "all invalid": client.post("/v1/batch", json={"batch": [{"type": "nope"}]}, auth=AUTH),
            "invalid json": client.post("/v1/batch", content=b'{"batch": [', auth=AUTH),
            "no batch": client.post("/v1/batch", json={"calls": []}, auth=AUTH),
            "too many": client.post("/v1/batch", json={"batch": [{}] * (MAX_BATCH_EVENTS + 1)}, auth=AUTH),
            "bomb": client.post("/v1/b", content=gzip.compress(b" " * 10_000_000), headers={"Content-Encoding": "gzip"}, auth=AUTH),
            "form": client.post("/v1/t", content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=AUTH),
        }
    found = {name: (r.status_code, r.json()["errors"][0]["field"]) for name, r in answers.items()}
    assert found == {
        "single invalid": (400, "event"),
        "all invalid": (400, "batch"),
        "invalid json": (400, "body"),
        "no batch": (400, "batch"),
        "too many": (413, "batch"),
        "bomb": (413, "body"),
        "form": (415, "content-type"),
    }
    assert answers["all invalid"].json()["rejected"][0]["index"] == 0
    assert not raw_events(collector_settings)
    rows = bad_rows(collector_settings)
    assert len(rows) == 7
    assert {r.value["problems"][0]["field"] for r in rows} == {"event", "type", "body", "batch", "content-type"}
    assert {r.value["payload"] for r in rows if r.value["problems"][0]["field"] == "body"} >= {'{"batch": ['}


@pytest.mark.parametrize(
    ("auth", "status", "reason"),
    [(None, 401, "missing"), (("wk-unknown", ""), 401, "unknown write key"), (("wk-old", ""), 403, "disabled")],
)
def test_write_keys_are_checked(collector_settings, tmp_path, auth, status, reason):
    sources = [{"id": "web", "write_key": WRITE_KEY}, {"id": "old", "write_key": "wk-old", "enabled": False}]
    with running_collector(collector_settings, tmp_path, sources) as client:
        response = client.post("/v1/track", json=call("track"), auth=auth)
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["field"] == "writeKey" and reason in error["reason"]


def test_cors_lets_any_origin_send_unless_the_source_lists_its_origins(collector_settings, tmp_path):
    sources = [{"id": "web", "write_key": WRITE_KEY}, {"id": "shop", "write_key": "wk-shop", "allowed_origins": ["https://shop.example"]}]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
    with running_collector(collector_settings, tmp_path, sources) as client:
        open_preflight = client.options("/v1/batch", headers={"Origin": "https://any.example", **preflight})
        shop_preflight = client.options("/v1/t?writeKey=wk-shop", headers={"Origin": "https://shop.example", **preflight})
        evil_preflight = client.options("/v1/t?writeKey=wk-shop", headers={"Origin": "https://evil.example", **preflight})
        open_post = client.post("/v1/t", json=call("track"), auth=AUTH, headers={"Origin": "https://any.example"})
        shop_post = client.post("/v1/t?writeKey=wk-shop", json=call("track", 2), headers={"Origin": "https://shop.example"})
        evil_post = client.post(
            "/v1/t",
            content=orjson.dumps({**call("track", 3), "writeKey": "wk-shop"}),
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        server_post = client.post("/v1/t", json=call("track", 4), auth=("wk-shop", ""))
    assert open_preflight.status_code == 200 and open_preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in open_preflight.headers["access-control-allow-methods"]
    assert shop_preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert evil_preflight.status_code == 400 and "access-control-allow-origin" not in evil_preflight.headers
    assert open_post.status_code == 200 and open_post.headers["access-control-allow-origin"] == "*"
    assert shop_post.status_code == 200 and shop_post.headers["access-control-allow-origin"] == "https://shop.example"
    assert evil_post.status_code == 403 and evil_post.json()["errors"][0]["field"] == "origin"
    assert server_post.status_code == 200  # no Origin: a server-side SDK
    assert sorted(e.value["anonymous_id"] for e in raw_events(collector_settings)) == ["anon-1", "anon-2", "anon-4"]


def test_the_pixel_always_answers_a_gif_and_dead_letters_what_it_refuses(collector_settings, tmp_path):
    data = base64.urlsafe_b64encode(orjson.dumps({**call("page", 2), "writeKey": WRITE_KEY})).decode().rstrip("=")
    with running_collector(collector_settings, tmp_path) as client:
        plain = client.get(f"/v1/pixel/track?writeKey={WRITE_KEY}&event=Email+Opened&userId=u-1&properties.campaign=spring")
        encoded = client.get(f"/v1/pixel?data={data}")
        invalid = client.get(f"/v1/pixel/track?writeKey={WRITE_KEY}&userId=u-3")
        undecodable = client.get(f"/v1/pixel?writeKey={WRITE_KEY}&data=%%%")
        unknown_key = client.get("/v1/pixel/track?writeKey=nope&event=E&userId=u")
    for response, status in [(plain, 200), (encoded, 200), (invalid, 400), (undecodable, 400), (unknown_key, 401)]:
        assert (response.status_code, response.headers["content-type"], response.content) == (status, "image/gif", PIXEL_GIF)
        assert "no-store" in response.headers["cache-control"]
    events = {e.value["type"]: e.value for e in raw_events(collector_settings)}
    assert events["track"]["event"] == "Email Opened" and events["track"]["properties"] == {"campaign": "spring"}
    assert events["page"]["message_id"] == "m-page-2"
    assert sorted(r.value["problems"][0]["field"] for r in bad_rows(collector_settings)) == ["data", "event"]


def test_settings_let_analytics_js_bootstrap_against_this_collector(collector_settings, tmp_path):
    sources = [
        {"id": "web", "write_key": WRITE_KEY},
        {"id": "eu", "write_key": "wk-eu", "api_host": "eu.collector.example/v1"},
        {"id": "old", "write_key": "wk-old", "enabled": False},
    ]
    with running_collector(collector_settings, tmp_path, sources) as client:
        settings = client.get(f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": "https://shop.example"})
        eu = client.get("/v1/projects/wk-eu/settings").json()
        unknown, disabled = client.get("/v1/projects/nope/settings"), client.get("/v1/projects/wk-old/settings")
    assert settings.status_code == 200 and settings.headers["access-control-allow-origin"] == "*"
    assert "max-age" in settings.headers["cache-control"]
    segment = settings.json()["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (WRITE_KEY, "testserver/v1", "http")
    assert settings.json()["plan"]["track"]["__default"]["enabled"] is True
    assert eu["integrations"]["Segment.io"]["apiHost"] == "eu.collector.example/v1"
    assert (unknown.status_code, disabled.status_code) == (401, 403)
    assert unknown.json()["errors"][0]["field"] == "writeKey"


def test_a_write_key_over_its_rate_gets_429_with_retry_after(collector_settings, tmp_path):
    sources = [{"id": "web", "write_key": WRITE_KEY, "rate_limit": {"events_per_second": 0.01, "burst": 3}}]
    with running_collector(collector_settings, tmp_path, sources) as client:
        assert client.post("/v1/batch", json={"batch": [call("track", i) for i in range(3)]}, auth=AUTH).status_code == 200
        limited = client.post("/v1/track", json=call("track", 9), auth=AUTH)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["errors"][0]["field"] == "writeKey"
    assert len(raw_events(collector_settings)) == 3


def test_a_hot_device_is_held_back_without_breaking_its_order_or_other_devices(collector_settings, tmp_path):
    sources = [{"id": "web", "write_key": WRITE_KEY, "device_rate_limit": {"events_per_second": 0.01, "burst": 2}}]
    hot = {"type": "track", "event": "Tick", "anonymousId": "hot"}
    with running_collector(collector_settings, tmp_path, sources) as client:
        first = [client.post("/v1/t", json={**hot, "messageId": f"hot-{i}"}, auth=AUTH).status_code for i in range(3)]
        mixed = client.post(
            "/v1/batch", json={"batch": [{**call("track", 5), "messageId": "calm-1"}, {**hot, "messageId": "hot-3"}]}, auth=AUTH
        )
        calm = client.post("/v1/t", json={**call("track", 5), "messageId": "calm-2"}, auth=AUTH)
    assert first == [200, 200, 429]
    assert mixed.status_code == 429 and mixed.json()["errors"][0]["field"] == "anonymousId"
    assert calm.status_code == 200
    # Nothing of a refused request was written: the SDK retries it whole, in order.
    assert sorted(e.value["message_id"] for e in raw_events(collector_settings)) == ["calm-2", "hot-0", "hot-1"]


def test_client_addresses_come_from_trusted_proxies_only_and_are_truncated_where_asked(collector_settings, tmp_path):
    sources = [{"id": "web", "write_key": WRITE_KEY}, {"id": "eu", "write_key": "wk-eu", "truncate_ip": True}]
    forwarded = {"X-Forwarded-For": "198.51.100.77", "User-Agent": "Mozilla/5.0 (test)"}
    with running_collector(collector_settings, tmp_path, sources, trusted_proxies="testclient") as client:
        client.post("/v1/t", json=call("track", 1), auth=AUTH, headers=forwarded)
        client.post("/v1/t", json=call("track", 2), auth=("wk-eu", ""), headers=forwarded)
    with running_collector(collector_settings, tmp_path, sources) as client:
        client.post("/v1/t", json=call("track", 3), auth=AUTH, headers=forwarded)
    found = {e.value["anonymous_id"]: (e.value["ip"], e.value["user_agent"]) for e in raw_events(collector_settings)}
    assert found == {
        "anon-1": ("198.51.100.77", "Mozilla/5.0 (test)"),
        "anon-2": ("198.51.100.0", "Mozilla/5.0 (test)"),
        "anon-3": (None, "Mozilla/5.0 (test)"),  # the test client's peer is not an address, and it is not trusted
    }


def test_a_source_that_hashes_emails_never_writes_an_address_to_kafka(collector_settings, tmp_path):
    sources = [{"id": "web", "write_key": WRITE_KEY}, {"id": "eu", "write_key": "wk-eu", "hash_emails": True}]
    address = "Ann.Lee@Example.com"
    hashed = "sha256:" + hashlib.sha256(address.lower().encode()).hexdigest()

    def calls(source: str) -> list[dict]:
        return [
            {
                "type": "identify",
                "userId": address,
                "anonymousId": f"anon-{source}",
                "messageId": f"{source}-identify",
                "traits": {"email": f" {address} ", "plan": "pro", "backup": "ann@example.org"},
            },
            {
                "type": "track",
                "event": "Signed Up",
                "anonymousId": f"anon-{source}",
                "messageId": f"{source}-track",
                "properties": {"email": address},
                "context": {"traits": {"email": address}},
            },
            {"type": "track", "userId": address, "messageId": f"{source}-refused", "traits": {"email": address}},  # no event
        ]

    with running_collector(collector_settings, tmp_path, sources) as client:
        for key, source in ((WRITE_KEY, "web"), ("wk-eu", "eu")):
            response = client.post("/v1/batch", json={"batch": calls(source)}, auth=(key, ""))
            assert (response.status_code, response.json()["accepted"]) == (200, 2)
        unreadable = client.post("/v1/batch", content=b'{"batch": [{"traits": {"email": "%s"}' % address.encode(), auth=("wk-eu", ""))
        assert unreadable.status_code == 400

    raw = {m.value["message_id"]: m for m in raw_events(collector_settings)}
    # The source that asked: the raw topic (values and keys) holds the hash, never the address.
    identify, track = raw["eu-identify"].value, raw["eu-track"].value
    assert (identify["user_id"], identify["traits"]) == (hashed, {"email": hashed, "plan": "pro", "backup": hash_email("ann@example.org")})
    assert (track["properties"], track["context"]["traits"]) == ({"email": hashed}, {"email": hashed})
    assert (raw["eu-identify"].key, raw["eu-track"].key) == ("anon-eu", "anon-eu")
    assert not [m for m in raw.values() if m.value["source_id"] == "eu" and "@" in orjson.dumps(m.value).decode() + (m.key or "")]
    # Any other source: as sent.
    assert raw["web-identify"].value["traits"]["email"] == f" {address} " and raw["web-identify"].value["user_id"] == address
    assert raw["web-track"].value["properties"] == {"email": address}
    # The dead-letter topic too: the refused call, and a body that could not even be read.
    rows = {(r.value["source_id"], r.value["index"]): r.value for r in bad_rows(collector_settings)}
    assert set(rows) == {("web", 2), ("eu", 2), (None, None)}
    assert orjson.loads(rows["eu", 2]["payload"])["traits"] == {"email": hashed} and address not in rows["eu", 2]["payload"]
    assert rows[None, None]["payload"] == f'{{"batch": [{{"traits": {{"email": "{hashed}"}}'
    assert address in rows["web", 2]["payload"]


def test_an_unexpected_failure_is_a_503_with_a_reason_and_unknown_routes_answer_json(collector_settings, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    with running_collector(collector_settings, tmp_path) as client:
        monkeypatch.setattr(tracking, "normalize_all", broken)
        failed = client.post("/v1/track", json=call("track"), auth=AUTH)
        monkeypatch.undo()
        missing, no_such_call, wrong_method = (
            client.get("/nothing"),
            client.post("/v1/nothing", json={}, auth=AUTH),
            client.get("/v1/track"),
        )
        recovered = client.post("/v1/track", json=call("track"), auth=AUTH)
    assert failed.status_code == 503 and failed.headers["retry-after"]
    assert failed.json()["errors"] == [{"field": "collector", "reason": "unexpected internal error; retry later", "rule": "internal_error"}]
    assert (missing.status_code, missing.json()["errors"][0]["field"]) == (404, "path")
    assert (no_such_call.status_code, no_such_call.json()["errors"][0]["field"]) == (404, "path")
    assert (wrong_method.status_code, wrong_method.json()["errors"][0]["field"]) == (405, "method")
    assert recovered.status_code == 200


def test_probes_and_metrics(collector_settings, tmp_path):
    with running_collector(collector_settings, tmp_path) as client:
        client.post("/v1/track", json=call("track"), auth=AUTH)
        client.post("/v1/track", json={"userId": "u"}, auth=AUTH)
        health, ready, metrics = client.get("/healthz"), client.get("/readyz"), client.get("/metrics")
    assert (health.status_code, ready.status_code, ready.json()) == (200, 200, {"kafka": "reachable"})
    text = metrics.text
    for series in (
        'footfall_collector_requests_total{route="/v1/{call}",status="200"}',
        'footfall_collector_requests_total{route="/v1/{call}",status="400"}',
        'footfall_collector_events_accepted_total{type="track"}',
        'footfall_collector_events_rejected_total{field="event"}',
        "footfall_collector_produce_seconds_bucket",
        "footfall_collector_producer_queue_depth",
    ):
        assert series in text, series
