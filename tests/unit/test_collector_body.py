"""What a request may carry: body size and encoding limits, content types, and the pixel's query string."""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib

import orjson
import pytest
from starlette.datastructures import QueryParams
from starlette.requests import Request

from ingest.body import MAX_WIRE_BYTES, BodyError, gunzip_limited, read_json_body
from ingest.pixel import pixel_call
from schemas.tracking import MAX_BATCH_BYTES


def request(body: bytes, headers: dict[str, str] | None = None, chunk_size: int = 64 * 1024) -> Request:
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {"content-type": "application/json"}).items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/batch", "headers": raw_headers, "query_string": b""}, receive)


def read(body: bytes, headers: dict[str, str] | None = None, **kwargs):
    return asyncio.run(read_json_body(request(body, headers, **kwargs)))


def refusal(body: bytes, headers: dict[str, str] | None = None, **kwargs) -> BodyError:
    with pytest.raises(BodyError) as caught:
        read(body, headers, **kwargs)
    return caught.value


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "text/plain", "TEXT/PLAIN;charset=UTF-8"])
def test_json_and_send_beacon_bodies_are_read(content_type):
    assert read(b'{"a": 1}', {"content-type": content_type}) == {"a": 1}


def test_a_body_without_content_type_is_read_as_json():
    assert read(b'{"a": 1}', {}) == {"a": 1}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/octet-stream",
        "multipart/form-data",
    ],
)
def test_a_json_body_is_read_as_json_whatever_content_type_it_declares(content_type):
    """Server SDKs (and RudderStack's gateway, which reads them) send JSON declared as a form, often gzipped."""
    body = orjson.dumps({"batch": [{"type": "track", "event": "e", "userId": "u"}]})
    assert read(body, {"content-type": content_type}) == orjson.loads(body)
    assert read(gzip.compress(body), {"content-type": content_type, "content-encoding": "gzip"}) == orjson.loads(body)
    assert read(gzip.compress(body), {"content-encoding": "gzip"}) == orjson.loads(body)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "application/xml"])
def test_a_body_that_is_not_json_under_another_content_type_is_415_and_kept(content_type):
    error = refusal(b"a=1&b=2", {"content-type": content_type})
    assert (error.status, error.field, error.raw) == (415, "content-type", b"a=1&b=2")
    assert content_type in error.reason


@pytest.mark.parametrize("headers", [{"content-type": "application/json"}, {"content-type": "text/plain"}, {}])
def test_a_body_that_claims_to_be_json_but_is_not_is_400_invalid_json(headers):
    error = refusal(b"a=1", headers)
    assert (error.status, error.field) == (400, "body")
    assert "invalid JSON" in error.reason


def test_an_unsupported_encoding_is_415():
    error = refusal(b"{}", {"content-type": "application/json", "content-encoding": "br"})
    assert (error.status, error.field) == (415, "content-encoding")


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    error = refusal(b"{}", {"content-type": "application/json", "content-length": str(MAX_WIRE_BYTES + 1)})
    assert (error.status, error.field) == (413, "body")


def test_a_streamed_body_over_the_limit_is_refused_while_reading():
    error = refusal(b"x" * (MAX_WIRE_BYTES + 10), {"content-type": "application/json"}, chunk_size=1024)
    assert error.status == 413


def test_json_over_the_batch_limit_is_413_even_within_the_wire_limit():
    body = orjson.dumps({"batch": ["x" * (MAX_BATCH_BYTES + 10)]})
    assert len(body) <= MAX_WIRE_BYTES
    assert refusal(body).status == 413


@pytest.mark.parametrize(("body", "reason"), [(b"{", "invalid JSON"), (b"   ", "empty body"), (b"\xff\xfe", "invalid JSON")])
def test_unreadable_json_is_400_with_a_reason(body, reason):
    error = refusal(body)
    assert (error.status, error.field) == (400, "body")
    assert reason in error.reason


def test_gzip_bodies_are_inflated():
    headers = {"content-type": "text/plain", "content-encoding": "gzip"}
    assert read(gzip.compress(b'{"batch": []}'), headers) == {"batch": []}


def test_a_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024), compresslevel=9)  # 50 MB of zeros in ~50 KB
    assert len(bomb) < MAX_WIRE_BYTES
    error = refusal(bomb, {"content-type": "application/json", "content-encoding": "gzip"})
    assert (error.status, error.field) == (413, "body")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(b'{"a": 1}')[:-6], "truncated"),
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(b'{"a": 1}') + gzip.compress(b"{}"), "one gzip member"),
    ],
)
def test_broken_gzip_is_400(data, reason):
    with pytest.raises(BodyError) as caught:
        gunzip_limited(data)
    assert caught.value.status == 400
    assert reason in caught.value.reason


def test_raw_deflate_is_not_gzip():
    with pytest.raises(BodyError):
        gunzip_limited(zlib.compress(b"{}"))


# -- the pixel's query string ---------------------------------------------------------------------------------


CALL = {"type": "track", "event": "Email Opened", "userId": "42", "properties": {"subject": "Hi ✓"}}


@pytest.mark.parametrize(
    "encode",
    [
        lambda raw: base64.b64encode(raw).decode(),
        lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="),
        lambda raw: base64.b64encode(raw).decode().replace("+", " "),  # "+" not URL-encoded by the sender
    ],
)
def test_pixel_data_is_base64_json_in_either_alphabet(encode):
    raw = orjson.dumps({**CALL, "properties": {"subject": "Hi ✓", "k": "~~~>>>???"}})
    assert pixel_call(QueryParams({"data": encode(raw)})) == orjson.loads(raw)


@pytest.mark.parametrize(("data", "reason"), [("!!!", "not base64"), (base64.b64encode(b"{nope").decode(), "not base64 of JSON")])
def test_undecodable_pixel_data_names_the_data_field(data, reason):
    with pytest.raises(BodyError) as caught:
        pixel_call(QueryParams({"data": data}))
    assert (caught.value.status, caught.value.field) == (400, "data")
    assert reason in caught.value.reason


def test_plain_pixel_parameters_nest_by_dots_and_stay_strings():
    params = QueryParams("writeKey=k&type=track&event=Opened&userId=42&properties.plan=pro&context.campaign.source=mail")
    assert pixel_call(params) == {
        "type": "track",
        "event": "Opened",
        "userId": "42",
        "properties": {"plan": "pro"},
        "context": {"campaign": {"source": "mail"}},
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [("userId.x=1", "userId.x"), ("properties.a=1&properties.a.b=2", "properties.a.b"), ("properties..a=1", "properties..a")],
)
def test_bad_plain_pixel_parameters_name_the_parameter(query, field):
    with pytest.raises(BodyError) as caught:
        pixel_call(QueryParams(query))
    assert (caught.value.status, caught.value.field) == (400, field)
