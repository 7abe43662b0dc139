"""What the edge records about a request: the client address (X-Forwarded-For only from trusted proxies,
truncated where a source asks), write keys and their sources, and the last-resort guard."""

from __future__ import annotations

import asyncio
import base64
import logging

import orjson
import pytest
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ingest.config import CollectorConfig
from ingest.edge import edge_of, recorded_ip
from ingest.guard import LastResortGuard
from ingest.sources import Source, SourceRegistry, write_key_of

SOURCE = Source(id="web", write_key="wk-secret")


def call_app(app, scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/v1/t", "query_string": b"", **scope}, receive, send))
    return sent


def client_ip(trusted_proxies: str, peer: str, forwarded_for: str | None, truncate: bool = False) -> str | None:
    """The address the collector records, through the same middleware and config the app uses."""
    recorded = []

    async def app(scope, _receive, _send):
        recorded.append((await edge_of(Request(scope), SOURCE.model_copy(update={"truncate_ip": truncate}))).ip)

    trusted = CollectorConfig(trusted_proxies=trusted_proxies).trusted_proxy_list
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    call_app(ProxyHeadersMiddleware(app, trusted_hosts=trusted), {"client": (peer, 51000), "headers": headers})
    return recorded[0]


# -- client address -------------------------------------------------------------------------------------------


def test_the_connection_peer_is_the_client_without_trusted_proxies():
    assert client_ip("", "203.0.113.9", "198.51.100.7") == "203.0.113.9"


def test_x_forwarded_for_is_believed_from_a_trusted_proxy():
    assert client_ip("10.0.0.0/8, 192.0.2.1", "10.1.2.3", "198.51.100.7") == "198.51.100.7"
    assert client_ip("10.0.0.0/8, 192.0.2.1", "192.0.2.1", "198.51.100.7") == "198.51.100.7"


def test_x_forwarded_for_from_anyone_else_is_ignored():
    assert client_ip("10.0.0.0/8", "203.0.113.9", "198.51.100.7") == "203.0.113.9"


def test_a_spoofed_chain_yields_the_rightmost_untrusted_address():
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxies appended the real client and themselves.
    assert client_ip("10.0.0.0/8", "10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.1") == "198.51.100.7"


def test_garbage_from_a_trusted_proxy_is_not_recorded_as_an_address():
    assert client_ip("10.0.0.0/8", "10.0.0.2", "<script>") is None


@pytest.mark.parametrize(
    ("address", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678:9abc:def0:1:2", "2001:db8:1234::"),
    ],
)
def test_truncation_zeroes_the_last_ipv4_octet_and_the_last_80_ipv6_bits(address, truncated):
    assert recorded_ip(address, True) == truncated
    assert recorded_ip(address, False) == address


def test_ipv4_clients_of_a_dual_stack_socket_are_recorded_as_ipv4():
    assert recorded_ip("::ffff:203.0.113.77", False) == "203.0.113.77"
    assert recorded_ip("::ffff:203.0.113.77", True) == "203.0.113.0"


def test_truncation_applies_to_forwarded_addresses_too():
    assert client_ip("10.0.0.0/8", "10.1.2.3", "198.51.100.7", truncate=True) == "198.51.100.0"


@pytest.mark.parametrize("host", [None, "", "testclient", "not-an-ip"])
def test_hosts_that_are_not_addresses_are_not_recorded(host):
    assert recorded_ip(host, True) is None


# -- write keys -----------------------------------------------------------------------------------------------


def key_request(headers: dict[str, str] | None = None, query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/t", "headers": raw, "query_string": query.encode()})


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("request_", "body", "key"),
    [
        (key_request({"Authorization": basic("k-basic")}), {"writeKey": "k-body"}, "k-basic"),
        (key_request({"X-Write-Key": "k-header"}), {"writeKey": "k-body"}, "k-header"),
        (key_request(query="writeKey=k-query"), {"writeKey": "k-body"}, "k-query"),
        (key_request(), {"writeKey": "k-body"}, "k-body"),
        (key_request({"Authorization": "Basic !!!"}), None, None),
        (key_request({"Authorization": "Bearer abc"}), ["writeKey"], None),
    ],
)
def test_the_write_key_comes_from_basic_auth_header_query_or_body(request_, body, key):
    assert write_key_of(request_, body) == key


def test_sources_come_from_a_file_with_their_options(tmp_path):
    path = tmp_path / "sources.json"
    entries = [
        {
            "id": "web",
            "write_key": "wk-1",
            "allowed_origins": ["https://shop.example"],
            "truncate_ip": True,
            "hash_emails": True,
            "rate_limit": {"events_per_second": 100, "burst": 500},
        },
        {"id": "old", "write_key": "wk-2", "enabled": False},
    ]
    path.write_bytes(orjson.dumps(entries))
    registry = CollectorConfig(sources_file=path).sources()
    web = registry.find("wk-1")
    assert (web.id, web.truncate_ip, web.hash_emails, web.rate_limit.burst) == ("web", True, True, 500)
    assert registry.find("wk-2").hash_emails is False  # off unless asked
    assert web.allows_origin("https://shop.example") and web.allows_origin(None)
    assert not web.allows_origin("https://evil.example")
    assert registry.find("wk-2").enabled is False
    assert registry.find("wk-3") is None
    assert registry.find("wk-") is None


def test_the_edge_carries_the_sources_wish_to_hash_emails():
    request = Request({"type": "http", "method": "POST", "path": "/v1/t", "query_string": b"", "headers": [], "client": ("203.0.113.9", 1)})
    assert asyncio.run(edge_of(request, SOURCE)).hash_emails is False
    assert asyncio.run(edge_of(request, SOURCE.model_copy(update={"hash_emails": True}))).hash_emails is True


def test_sources_come_from_a_key_list():
    registry = SourceRegistry.from_spec("k1=web, k2=ios,k3")
    assert [registry.find(k).id for k in ("k1", "k2", "k3")] == ["web", "ios", "default"]


def test_a_write_key_never_shows_in_a_repr():
    assert "wk-secret" not in repr(SOURCE) and "wk-secret" not in str(SOURCE)


# -- the last-resort guard ------------------------------------------------------------------------------------


def test_an_unexpected_exception_becomes_a_503_with_a_reason_and_no_payload_in_the_log(caplog):
    secret = "payload-" + "secret"  # built at run time: the traceback's source lines must not contain it

    async def broken(_scope, _receive, _send):
        raise KeyError(secret)

    with caplog.at_level(logging.ERROR):
        sent = call_app(LastResortGuard(broken, retry_after_s=7), {"headers": []})
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"7") in start["headers"]
    assert orjson.loads(body["body"])["errors"] == [
        {"field": "collector", "reason": "unexpected internal error; retry later", "rule": "internal_error"}
    ]
    assert "KeyError" in caplog.text and secret not in caplog.text


def test_after_the_answer_has_started_the_guard_does_not_send_a_second_one():
    async def fails_late(_scope, _receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("late")

    with pytest.raises(RuntimeError):
        call_app(LastResortGuard(fails_late), {"headers": []})
