"""Whatever arrives, the collector answers: never a 5xx, never a crash, and every refusal names a field.

Hypothesis drives the real app (lifespan, Kafka writer) against the real broker.
"""

from __future__ import annotations

import gzip
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.tracking import CALL_TYPES, TrackingCall
from tests.integration.test_collector_support import (
    NO_TESTCLIENT_WARNING,
    WRITE_KEY,
    running_collector,
)

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]

FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
POST_ROUTES = [
    "/v1/track",
    "/v1/t",
    "/v1/identify",
    "/v1/i",
    "/v1/page",
    "/v1/p",
    "/v1/screen",
    "/v1/s",
    "/v1/group",
    "/v1/g",
    "/v1/alias",
    "/v1/a",
    "/v1/batch",
    "/v1/b",
    "/b",
]
ascii_text = st.text(alphabet=string.printable.strip() + " ", max_size=40)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
plausible = st.sampled_from(
    [
        *CALL_TYPES,
        "identify ",
        "",
        "x" * 101,
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:00:00",
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00-12:00",
        42,
        -1,
        2**70,
        True,
        1e308,
        {},
        [],
        {"a": {"b": []}},
    ]
)
ids = st.text(min_size=1, max_size=12) | plausible
anything = plausible | json_values
# Mostly-valid calls (so the accepting path is exercised too), with random other fields, and random dicts.
likely_calls = st.fixed_dictionaries(
    {"type": st.sampled_from(CALL_TYPES), "userId": ids, "anonymousId": ids, "event": ids, "groupId": ids, "previousId": ids},
    optional={
        name: anything
        for name in TrackingCall.model_fields
        if name not in ("type", "userId", "anonymousId", "event", "groupId", "previousId")
    },
)
calls = likely_calls | st.dictionaries(st.sampled_from([*TrackingCall.model_fields, "writeKey", "batch"]), anything, max_size=9)
batches = st.fixed_dictionaries(
    {"batch": st.lists(calls | json_values, max_size=6)},
    optional={
        "context": json_values,
        "sentAt": plausible,
        "writeKey": st.sampled_from([WRITE_KEY, "nope", 5]),
        "integrations": json_values,
    },
)
valid_calls = st.fixed_dictionaries(
    {"type": st.just("track"), "anonymousId": st.text(min_size=1, max_size=20), "event": st.text(min_size=1, max_size=20)},
    optional={
        "properties": st.dictionaries(st.text(max_size=8), json_values, max_size=5),
        "context": st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    },
)
bodies = valid_calls | st.fixed_dictionaries({"batch": st.lists(valid_calls | calls, max_size=6)}) | calls | batches | json_values
# Headers SDKs send (random ones are the next test's business), so that most bodies get read.
sdk_content_types = st.sampled_from(["application/json", "text/plain;charset=UTF-8", "", "application/json; charset=utf-8"])
sdk_encodings = st.sampled_from(["", "gzip", "identity"])
content_types = st.sampled_from(["application/json", "text/plain", "application/xml", "multipart/form-data"]) | ascii_text
auths = st.sampled_from([(WRITE_KEY, ""), (WRITE_KEY, ""), ("nope", ""), None])


def assert_answered_with_reasons(response) -> None:
    event(f"status {response.status_code}")  # --hypothesis-show-statistics tells how often each answer came
    assert response.status_code < 500, response.text
    if response.headers.get("content-type") == "image/gif":
        return
    body = response.json()
    problems = list(body.get("errors", []))
    for rejected in body.get("rejected", []):
        assert isinstance(rejected["index"], int)
        problems += rejected["errors"]
    if response.status_code >= 400:
        assert body["success"] is False and body["errors"], body
    for problem in problems:
        assert isinstance(problem["field"], str) and problem["field"], body
        assert isinstance(problem["reason"], str) and problem["reason"], body


def encoded(body: Any, encoding: str, compress: bool) -> bytes:
    data = json.dumps(body).encode()
    return gzip.compress(data) if compress and encoding.startswith("gzip") else data


@pytest.fixture
def client(collector_settings, tmp_path):
    with running_collector(collector_settings, tmp_path) as client:
        yield client


@FUZZ
@given(
    route=st.sampled_from(POST_ROUTES),
    body=bodies,
    content_type=sdk_content_types,
    encoding=sdk_encodings,
    compress=st.booleans(),
    auth=auths,
)
def test_json_ish_bodies_on_every_route(client, route, body, content_type, encoding, compress, auth):
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    assert_answered_with_reasons(client.post(route, content=encoded(body, encoding, compress), headers=headers, auth=auth))


@FUZZ
@given(
    route=st.sampled_from(POST_ROUTES),
    data=st.binary(max_size=2_000),
    content_type=content_types,
    headers=st.dictionaries(
        st.sampled_from(["content-encoding", "x-write-key", "authorization", "origin", "x-forwarded-for", "user-agent"]), ascii_text
    ),
)
def test_random_bytes_and_headers(client, route, data, content_type, headers):
    assert_answered_with_reasons(client.post(route, content=data, headers={"Content-Type": content_type, **headers}))


@FUZZ
@given(
    path=st.sampled_from(["/v1/pixel", "/v1/pixel/track", "/v1/pixel/page", "/v1/pixel/nonsense"]),
    params=st.dictionaries(
        st.sampled_from([*TrackingCall.model_fields, "data", "properties.a", "context.a.b", "x.y", "properties..z"]),
        st.sampled_from(["eyJ0eXBlIjoidHJhY2sifQ", "%%", "", "2026-03-01T12:00:00Z"]) | ascii_text,
        max_size=6,
    ),
    base=st.sampled_from([{"writeKey": WRITE_KEY, "userId": "u", "event": "Opened"}, {"writeKey": WRITE_KEY}, {}]),
)
def test_pixel_query_strings(client, path, params, base):
    assert_answered_with_reasons(client.get(path, params={**params, **base}))
