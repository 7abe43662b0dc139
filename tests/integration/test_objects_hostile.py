"""The objects API under hostile input, against a real broker and ClickHouse: named 4xx for what it refuses
(integers beyond 64 bits, property names, due times ClickHouse cannot hold, forged cursors, unknown types and
fields), and no body, ref, filter or cursor gets a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.api_support import ADMIN_KEY
from tests.integration.test_api_hostile import api, json_values, named  # noqa: F401 - the same fixture and values

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "word"),
    [
        ("POST", "/api/v1/objects/deal", {"properties": {"n": 2**70}}, 422, "properties.n type"),
        ("POST", "/api/v1/objects/deal", {"properties": {"a": {"b": [-(2**64)]}}}, 422, "properties.a type"),
        ("POST", "/api/v1/objects/deal", {"properties": {"bad name!": 1}}, 422, "properties.bad name! name"),
        ("POST", "/api/v1/objects/deal", {"due_at": "9999-01-01T00:00:00Z"}, 422, "due_at"),
        ("POST", "/api/v1/objects/deal", {"stage": "won2"}, 422, "stage one_of"),
        ("POST", "/api/v1/objects/deal", {"colour": "red"}, 422, "colour"),
        ("POST", "/api/v1/objects/deal", {"links": {"users": ["user_id:nobody-here"]}}, 404, "ref exists"),
        ("POST", "/api/v1/objects/deal", {"links": {"companies": ["no-such-company"]}}, 404, "links.companies exists"),
        ("POST", "/api/v1/objects/Bad-Type", {}, 404, "type exists"),
        ("PATCH", "/api/v1/objects/deal/nothing-here", {"set": {"a": 1}}, 404, "id exists"),
        ("POST", "/api/v1/objects/deal/nothing-here/stage", {"stage": "won"}, 404, "id exists"),
        ("PUT", "/api/v1/object-types/project", {"stages": []}, 422, "stages"),
        ("PUT", "/api/v1/object-types/Project!", {"stages": ["a"]}, 422, "name"),
        ("PUT", "/api/v1/object-types/project", {"stages": ["a"], "stage_effects": {"a": "no-such-stage"}}, 422, "stage_effects one_of"),
        ("DELETE", "/api/v1/object-types/nothing", None, 404, "type exists"),
        ("GET", "/api/v1/objects/deal?cursor=eyJ4Ijox", None, 422, "cursor format"),
        ("GET", "/api/v1/objects/deal?stage=nope", None, 422, "stage one_of"),
        ("GET", "/api/v1/users/user_id:nobody-here/objects?type=deal", None, 404, "ref exists"),
        ("POST", "/api/v1/companies", {"properties": {"n": 2**70}}, 422, "properties.n type"),
        ("PATCH", "/api/v1/companies/acme", {"set": {"n": [2**64]}}, 422, "properties.n type"),
    ],
)
def test_refusals_name_the_field_and_rule(api, method, path, body, status, word):  # noqa: F811 - the fixture imported above
    content = None if body is None else json.dumps(body)
    response = api.request(method, path, content=content, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == status, response.text
    assert word in named(response.json()) or word in response.text, response.text


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, where=st.sampled_from(["create", "properties", "links", "patch", "patch-set", "type", "type-properties"]))
def test_no_json_body_gets_a_5xx(api, value, where):  # noqa: F811 - the fixture imported above
    body = {
        "create": value,
        "properties": {"properties": value},
        "links": {"links": value},
        "patch": value,
        "patch-set": {"set": value},
        "type": value,
        "type-properties": {"stages": ["a", "b"], "properties": value},
    }[where]
    method, path = {
        "create": ("POST", "/api/v1/objects/deal"),
        "properties": ("POST", "/api/v1/objects/ticket"),
        "links": ("POST", "/api/v1/objects/activity"),
        "type": ("PUT", "/api/v1/object-types/fuzzed"),
        "type-properties": ("PUT", "/api/v1/object-types/fuzzed"),
    }.get(where, ("PATCH", "/api/v1/objects/deal/fuzz-nothing"))
    response = api.request(method, path, content=json.dumps(body, allow_nan=False), headers={**AUTH, "content-type": "application/json"})
    assert response.status_code < 500, response.text


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.text(min_size=1, max_size=60), text=st.text(max_size=60), cursor=st.text(max_size=60))
def test_no_ref_filter_or_cursor_gets_a_5xx(api, ref, text, cursor):  # noqa: F811 - the fixture imported above
    ref = quote(ref, safe="")
    for path, params in (
        (f"/api/v1/objects/deal/{ref}", {}),
        (f"/api/v1/objects/{ref}", {"owner": text, "cursor": cursor}),
        ("/api/v1/objects/ticket", {"owner": text, "user": text or "x", "company": text, "cursor": cursor}),
        (f"/api/v1/users/{ref}/objects", {"type": text or "deal", "cursor": cursor}),
        (f"/api/v1/object-types/{ref}", {}),
    ):
        response = api.get(path, params=params, headers=AUTH)
        assert response.status_code < 500, (path, params, response.text)
