"""The security negative suite: nothing is written or read without the right key, nothing secret leaks.

Against the real collector app (lifespan and Kafka writer, real broker) and the real read API on the real
ClickHouse (chdb). Each refusal is paired with the same request made right, so a test cannot pass by
everything being refused.
"""

from __future__ import annotations

import base64
import logging
import uuid

import orjson
import pytest

from ingest import tracking
from ingest.responses import PIXEL_GIF
from projections.clickhouse import connect
from projections.read_api import create_read_app
from schemas.tracking import CALL_TYPES
from tests.integration.test_collector_support import (
    NO_TESTCLIENT_WARNING,
    WRITE_KEY,
    bad_rows,
    raw_events,
    running_collector,
)

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]

OTHER_KEY = "wk-sec-other-5d1f"
DISABLED_KEY = "wk-sec-disabled-77aa"
SHOP_KEY = "wk-sec-shop-93c2"
SHOP_ORIGIN = "https://shop.example"
WRONG_KEY = "wk-sec-wrong-0b3e"
ADMIN_KEY = "admin-sec-4f0c9e7d2b"
SOURCES = [
    {"id": "web", "write_key": WRITE_KEY},
    {"id": "other", "write_key": OTHER_KEY, "truncate_ip": True},
    {"id": "off", "write_key": DISABLED_KEY, "enabled": False},
    {"id": "shop", "write_key": SHOP_KEY, "allowed_origins": [SHOP_ORIGIN], "rate_limit": {"events_per_second": 1000, "burst": 1000}},
]
POST_ROUTES = {
    **{f"/v1/{t}": t for t in CALL_TYPES},
    **{f"/v1/{t[0]}": t for t in CALL_TYPES},
    "/v1/batch": None,
    "/v1/b": None,
    "/b": None,
}
PIXEL_ROUTES = ["/v1/pixel", *[f"/v1/pixel/{t}" for t in CALL_TYPES]]


def call(call_type: str, n: str) -> dict:
    return {
        "type": call_type,
        "event": "E",
        "anonymousId": f"anon-{n}",
        "userId": f"user-{n}",
        "previousId": f"prev-{n}",
        "groupId": "g",
        "messageId": f"sec-{n}",
    }


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post_request(path: str, call_type: str | None, key: str | None, carrier: str, n: str) -> dict:
    """The keyword arguments of client.request for a POST whose key (if any) travels in `carrier`."""
    body = call(call_type, n) if call_type else {"batch": [call("track", n)]}
    headers = {"Content-Type": "application/json"}
    url = path
    if key is not None:
        if carrier == "basic":
            headers["Authorization"] = basic(key)
        elif carrier == "header":
            headers["X-Write-Key"] = key
        elif carrier == "query":
            url = f"{path}?writeKey={key}"
        else:
            body["writeKey"] = key
            headers["Content-Type"] = "text/plain"
    return {"method": "POST", "url": url, "content": orjson.dumps(body), "headers": headers}


def pixel_request(path: str, key: str | None, carrier: str, n: str) -> dict:
    query = f"type=track&event=E&anonymousId=anon-{n}&userId=user-{n}&groupId=g&previousId=p&messageId=sec-{n}"
    headers = {}
    if key is not None:
        if carrier == "header":
            headers["X-Write-Key"] = key
        elif carrier == "basic":
            headers["Authorization"] = basic(key)
        else:
            query += f"&writeKey={key}"
    return {"method": "GET", "url": f"{path}?{query}", "headers": headers}


def test_no_write_without_the_right_key_on_any_route(collector_settings, tmp_path):
    """Every write route, with no key, a wrong one or a disabled source's, in every place a key may travel:
    401 (none or unknown) / 403 (disabled), and nothing on the raw topic, nor on the dead-letter topic."""
    refusals = []
    with running_collector(collector_settings, tmp_path, SOURCES) as client:
        assert client.post("/v1/track", json=call("track", "first"), auth=(WRITE_KEY, "")).status_code == 200
        n = 0
        for path, call_type in POST_ROUTES.items():
            for key, status in [(None, 401), (WRONG_KEY, 401), (DISABLED_KEY, 403)]:
                for carrier in ("basic", "header", "query", "body") if key else ("none",):
                    n += 1
                    response = client.request(**post_request(path, call_type, key, carrier, f"post-{n}"))
                    errors = response.json().get("errors", [{}])
                    if (response.status_code, errors[0].get("field")) != (status, "writeKey"):
                        refusals.append(f"POST {path} key={key} in {carrier}: {response.status_code} {errors}")
                    # A wrong key with a body that would otherwise be kept as a bad row: still nothing written.
                    if carrier in ("header", "query"):
                        broken = {**post_request(path, call_type, key, carrier, f"broken-{n}"), "content": b'{"batch": ['}
                        response = client.request(**broken)
                        if response.status_code != status:
                            refusals.append(f"POST {path} key={key} in {carrier}, invalid JSON: {response.status_code}")
        for path in PIXEL_ROUTES:
            for key, status in [(None, 401), (WRONG_KEY, 401), (DISABLED_KEY, 403)]:
                for carrier in ("query", "header", "basic") if key else ("none",):
                    n += 1
                    response = client.request(**pixel_request(path, key, carrier, f"pixel-{n}"))
                    if (response.status_code, response.content) != (status, PIXEL_GIF):
                        refusals.append(f"GET {path} key={key} in {carrier}: {response.status_code}")
                    if key is None:
                        continue  # no key anywhere: an undecodable query is kept (see the next test)
                    broken = pixel_request(path, key, carrier, f"pixel-broken-{n}")
                    broken["url"] += "&data=%25%25"  # undecodable: a bad row, if the key were not refused first
                    if client.request(**broken).status_code != status:
                        refusals.append(f"GET {path} key={key} in {carrier}, undecodable data: not {status}")
        assert client.post("/v1/track", json=call("track", "last"), auth=(WRITE_KEY, "")).status_code == 200
    assert not refusals, "\n".join(refusals)
    assert n > 150
    # The topic is live (both right requests are there), and nothing else is.
    assert sorted(e.value["message_id"] for e in raw_events(collector_settings)) == ["sec-first", "sec-last"]
    assert bad_rows(collector_settings) == []


def test_a_body_without_any_key_is_refused_but_kept_without_a_source(collector_settings, tmp_path):
    """The one way a request without a key writes: with no key in the headers or URL the key can only be
    in the body, so the body must be read first; when it cannot be read it is answered for what it is and
    kept on the dead-letter topic, with no source (documented gap: anyone can write such bad rows)."""
    with running_collector(collector_settings, tmp_path, SOURCES) as client:
        unreadable = client.post(
            "/v1/batch", content=b'{"writeKey": "' + WRONG_KEY.encode() + b'", "batch": [', headers={"Content-Type": "application/json"}
        )
        readable = client.post("/v1/batch", json={"writeKey": WRONG_KEY, "batch": [call("track", "x")]})
    assert unreadable.status_code == 400 and unreadable.json()["errors"][0]["field"] == "body"
    assert readable.status_code == 401
    assert raw_events(collector_settings) == []
    [row] = [m.value for m in bad_rows(collector_settings)]
    assert row["source_id"] is None and row["problems"][0]["field"] == "body"


@pytest.fixture
def secret_row(settings, clickhouse_client) -> str:
    """A row in the test's own database that only the admin key may read."""
    secret = f"secret-{uuid.uuid4().hex[:12]}"
    clickhouse_client.command(
        f"INSERT INTO {settings.database}.events (message_id, timestamp, received_at, type, event, distinct_id) "
        f"VALUES ('{secret}', now64(3), now64(3), 'track', 'Secret', 'person-secret')"
    )
    return secret


def test_the_read_api_needs_the_admin_key_and_never_writes(settings, clickhouse_client, secret_row):
    from starlette.testclient import TestClient  # imported here, where NO_TESTCLIENT_WARNING applies

    query = orjson.dumps({"query": f"SELECT message_id, event FROM {settings.database}.events"})
    count = f"SELECT count() FROM {settings.database}.events"
    # The read API's own client, as `footfall projector` gives it. On chdb an INSERT sent to /sql leaves its
    # readonly=2 on that client's handle (clickhouse-connect's restore is refused in readonly mode): harmless
    # there, but it must not be a client anything else writes with.
    with TestClient(create_read_app(connect(settings.clickhouse_dsn), ADMIN_KEY)) as client:
        refused = {
            "no key": client.post("/sql", content=query),
            "the write key": client.post("/sql", content=query, headers={"Authorization": f"Bearer {WRITE_KEY}"}),
            "a wrong admin key": client.post("/sql", content=query, headers={"Authorization": "Bearer admin-wrong"}),
            "the admin key, cut short": client.post("/sql", content=query, headers={"Authorization": f"Bearer {ADMIN_KEY[:-1]}"}),
            "the admin key, longer": client.post("/sql", content=query, headers={"Authorization": f"Bearer {ADMIN_KEY}x"}),
            "the admin key as Basic auth": client.post("/sql", content=query, headers={"Authorization": basic(ADMIN_KEY)}),
            "the admin key in the URL": client.post(f"/sql?key={ADMIN_KEY}", content=query),
            "the admin key in another header": client.post("/sql", content=query, headers={"X-Admin-Key": ADMIN_KEY}),
            "an empty bearer": client.post("/sql", content=query, headers={"Authorization": "Bearer "}),
            "a write without a key": client.post("/sql", content=orjson.dumps({"query": f"DROP TABLE {settings.database}.events"})),
        }
        allowed = client.post("/sql", content=query, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        writes = {
            sql: client.post("/sql", content=orjson.dumps({"query": sql}), headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            for sql in (
                f"INSERT INTO {settings.database}.events (message_id) VALUES ('injected')",
                f"DROP TABLE {settings.database}.events",
                f"TRUNCATE TABLE {settings.database}.events",
                f"ALTER TABLE {settings.database}.events DELETE WHERE 1",
                f"CREATE TABLE {settings.database}.planted (x String) ENGINE = Memory",
            )
        }
    for what, response in refused.items():
        assert response.status_code == 401, what
        assert secret_row not in response.text and "rows" not in response.json(), what
    assert allowed.status_code == 200, allowed.text
    assert [secret_row, "Secret"] in allowed.json()["rows"]  # the right key reads: the refusals above are about the key
    for sql, response in writes.items():
        assert response.status_code == 400 and "rows" not in response.json(), sql
    assert clickhouse_client.query(count).result_rows == [(1,)]
    assert clickhouse_client.query(f"EXISTS TABLE {settings.database}.planted").result_rows == [(0,)]
    # Another client of the same engine (the projector's) still writes: readonly stayed on the read API's handle.
    clickhouse_client.command(f"INSERT INTO {settings.database}.events (message_id) VALUES ('after')")
    assert clickhouse_client.query(count).result_rows == [(2,)]


def test_the_settings_endpoint_tells_a_source_its_own_public_key_and_nothing_else(collector_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("FOOTFALL_ADMIN_KEY", ADMIN_KEY)
    secrets = [OTHER_KEY, DISABLED_KEY, SHOP_KEY, WRONG_KEY, ADMIN_KEY, collector_settings.kafka_bootstrap_servers]
    with running_collector(collector_settings, tmp_path, SOURCES) as client:
        client.post("/v1/track", json=call("track", "1"), auth=(WRITE_KEY, ""))
        client.post("/v1/track", json=call("track", "2"), auth=(WRONG_KEY, ""))
        own = client.get(f"/v1/projects/{WRITE_KEY}/settings")
        wrong, disabled = client.get(f"/v1/projects/{WRONG_KEY}/settings"), client.get(f"/v1/projects/{DISABLED_KEY}/settings")
        public = {path: client.get(path) for path in ("/metrics", "/healthz", "/readyz", "/nowhere")}
    assert own.status_code == 200 and own.json()["integrations"]["Segment.io"]["apiKey"] == WRITE_KEY
    assert set(own.json()) == {
        "integrations",
        "plan",
        "edgeFunction",
        "analyticsNextEnabled",
        "middlewareSettings",
        "enabledMiddleware",
        "metrics",
        "legacyVideoPluginsEnabled",
        "remotePlugins",
    }
    for secret in secrets:
        assert secret not in own.text
    # Refusals neither echo the key they were given nor name any other.
    assert (wrong.status_code, disabled.status_code) == (401, 403)
    for response in (wrong, disabled):
        assert "integrations" not in response.json()
        assert not any(secret in response.text for secret in [*secrets, WRITE_KEY])
    for path, response in public.items():
        assert not any(secret in response.text for secret in [*secrets, WRITE_KEY]), path
    assert "/v1/projects/{writeKey}/settings" in public["/metrics"].text  # routes are counted by template, never by key


def test_keys_never_reach_the_log(collector_settings, tmp_path, monkeypatch, caplog):
    """Requests with keys in every place they travel, right and wrong, accepted and refused, and an internal
    failure whose exception quotes the key: no log record of the collector names a key. (The test client's own
    `httpx` records quote the URLs it requests, keys included; they are the client's, not the collector's.)"""
    caplog.set_level(logging.DEBUG)
    keys = [WRITE_KEY, WRONG_KEY, DISABLED_KEY, SHOP_KEY]
    with running_collector(collector_settings, tmp_path, SOURCES) as client:
        for key in keys:
            for carrier in ("basic", "header", "query", "body"):
                client.request(**post_request("/v1/track", "track", key, carrier, f"{key}-{carrier}"))
                client.request(**{**post_request("/v1/batch", None, key, carrier, f"{key}-{carrier}-b"), "content": b'{"batch":['})
            client.get(f"/v1/pixel/track?writeKey={key}&event=E&userId=u")
            client.get(f"/v1/pixel?writeKey={key}&data=%25%25")
            client.get(f"/v1/projects/{key}/settings")
            client.post(f"/v1/t?writeKey={key}", json=call("track", "o"), headers={"Origin": "https://evil.example"})

        def broken(*_args, **_kwargs):
            raise RuntimeError(f"failed on the event of write key {WRITE_KEY}")

        monkeypatch.setattr(tracking, "normalize_all", broken)
        failed = client.post("/v1/track", json=call("track", "f"), auth=(WRITE_KEY, ""))
    assert failed.status_code == 503
    collector_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.levelno >= logging.ERROR and "RuntimeError" in r.getMessage() for r in collector_records), "the failure was not logged"
    for record in collector_records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert not any(key in text for key in keys), f"{record.name}: {text}"


def test_rate_limits_answer_429_with_retry_after(collector_settings, tmp_path):
    sources = [
        {"id": "web", "write_key": WRITE_KEY, "rate_limit": {"events_per_second": 0.01, "burst": 2}},
        {"id": "device", "write_key": OTHER_KEY, "device_rate_limit": {"events_per_second": 0.01, "burst": 1}},
    ]
    with running_collector(collector_settings, tmp_path, sources) as client:
        assert client.post("/v1/batch", json={"batch": [call("track", "1"), call("track", "2")]}, auth=(WRITE_KEY, "")).status_code == 200
        by_key = client.post("/v1/track", json=call("track", "3"), auth=(WRITE_KEY, ""))
        by_key_pixel = client.get(f"/v1/pixel/track?writeKey={WRITE_KEY}&event=E&anonymousId=anon-4&messageId=sec-4")
        assert client.post("/v1/track", json=call("track", "5"), auth=(OTHER_KEY, "")).status_code == 200
        by_device = client.post("/v1/track", json={**call("track", "5"), "messageId": "sec-5b"}, auth=(OTHER_KEY, ""))
        other_device = client.post("/v1/track", json=call("track", "6"), auth=(OTHER_KEY, ""))
    for response, field in [(by_key, "writeKey"), (by_device, "anonymousId")]:
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
        assert response.json()["errors"][0]["field"] == field
    assert by_key_pixel.status_code == 429 and by_key_pixel.content == PIXEL_GIF and int(by_key_pixel.headers["retry-after"]) >= 1
    assert other_device.status_code == 200
    assert sorted(e.value["message_id"] for e in raw_events(collector_settings)) == ["sec-1", "sec-2", "sec-5", "sec-6"]
    # An SDK retries a 429, a pixel never does: only the pixel's call is kept, as dropped.
    [dropped] = [m.value for m in bad_rows(collector_settings)]
    assert (dropped["kind"], dropped["message_id"], dropped["problems"][0]["rule"]) == ("rate_limited_dropped", "sec-4", "rate_limit")


def test_cors_is_restricted_per_source(collector_settings, tmp_path):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    evil = "https://evil.example"
    with running_collector(collector_settings, tmp_path, SOURCES) as client:
        # Preflights: with the key in the URL the source's own origins answer; without it the source is unknown.
        shop_ok = client.options(f"/v1/t?writeKey={SHOP_KEY}", headers={"Origin": SHOP_ORIGIN, **preflight})
        shop_evil = client.options(f"/v1/t?writeKey={SHOP_KEY}", headers={"Origin": evil, **preflight})
        unknown_source = client.options("/v1/t", headers={"Origin": evil, **preflight})
        settings_evil = client.get(f"/v1/projects/{SHOP_KEY}/settings", headers={"Origin": evil})
        # The requests themselves: refused from an origin the source does not list, wherever the key travels.
        refused = {
            "query": client.post(f"/v1/t?writeKey={SHOP_KEY}", json=call("track", "q"), headers={"Origin": evil}),
            "header": client.post("/v1/t", json=call("track", "h"), headers={"Origin": evil, "X-Write-Key": SHOP_KEY}),
            "basic": client.post("/v1/t", json=call("track", "b"), headers={"Origin": evil}, auth=(SHOP_KEY, "")),
            "body": client.post(
                "/v1/t",
                content=orjson.dumps({**call("track", "y"), "writeKey": SHOP_KEY}),
                headers={"Origin": evil, "Content-Type": "text/plain"},
            ),
            "null origin": client.post("/v1/t", json=call("track", "n"), headers={"Origin": "null", "X-Write-Key": SHOP_KEY}),
            "look-alike": client.post(
                "/v1/t", json=call("track", "l"), headers={"Origin": SHOP_ORIGIN + ".evil.example", "X-Write-Key": SHOP_KEY}
            ),
            "pixel": client.get(f"/v1/pixel/track?writeKey={SHOP_KEY}&event=E&userId=u&messageId=sec-pixel", headers={"Origin": evil}),
        }
        allowed = client.post(f"/v1/t?writeKey={SHOP_KEY}", json=call("track", "ok"), headers={"Origin": SHOP_ORIGIN})
        server_side = client.post("/v1/t", json=call("track", "server"), auth=(SHOP_KEY, ""))
        open_source = client.post("/v1/t", json=call("track", "open"), auth=(WRITE_KEY, ""), headers={"Origin": evil})
    assert shop_ok.status_code == 200 and shop_ok.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert shop_evil.status_code == 400 and "access-control-allow-origin" not in shop_evil.headers
    # Documented: a preflight without the key in its URL cannot know the source, so it is allowed; the POST is not.
    assert unknown_source.status_code == 200 and unknown_source.headers["access-control-allow-origin"] == "*"
    assert settings_evil.status_code == 200 and "access-control-allow-origin" not in settings_evil.headers
    for carrier, response in refused.items():
        assert response.status_code == 403, carrier
        if carrier != "pixel":
            assert response.json()["errors"][0]["field"] == "origin", carrier
    assert "access-control-allow-origin" not in refused["query"].headers  # the source's own CORS: the page cannot even read the refusal
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert server_side.status_code == 200 and open_source.status_code == 200  # no Origin: a server; a source without a list: any origin
    assert sorted(e.value["message_id"] for e in raw_events(collector_settings)) == ["sec-ok", "sec-open", "sec-server"]
    # Each refused call is kept as an `auth` bad row of its source (real visitors' events lost to the allow-list).
    kept = [m.value for m in bad_rows(collector_settings)]
    assert len(kept) == len(refused)
    assert {(row["kind"], row["source_id"], row["problems"][0]["field"], row["problems"][0]["rule"]) for row in kept} == {
        ("auth", "shop", "origin", "origin_not_allowed")
    }
    assert sorted(row["message_id"] for row in kept) == sorted(["sec-q", "sec-h", "sec-b", "sec-y", "sec-n", "sec-l", "sec-pixel"])
