"""The collector's OpenAPI document is a valid OpenAPI 3.1 document, names every route the app serves, and
describes the answers the real collector (on a real broker) gives: each is checked against the document."""

from __future__ import annotations

import base64

import orjson
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from starlette.routing import Mount, Route

from ingest.openapi import collector_openapi
from tests.integration.test_collector_support import (
    NO_TESTCLIENT_WARNING,
    WRITE_KEY,
    collector_app,
    running_collector,
)
from tests.pipeline import wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]
HOST = "http://testserver"


def _documented(openapi: OpenAPI, method: str, path: str, response) -> None:
    """The answer matches the document's status, content type and schema for this route."""
    request = MockRequest(HOST, method.lower(), path)
    content_type = response.headers.get("content-type", "").split(";")[0]
    openapi.validate_response(request, MockResponse(response.content, status_code=response.status_code, content_type=content_type))


def test_the_document_is_valid_and_names_every_route(collector_settings, tmp_path):
    document = collector_openapi()
    OpenAPI.from_dict(document)  # validates the document against the OpenAPI 3.1 specification
    app = collector_app(collector_settings, tmp_path)
    served = {route.path for route in app.routes if isinstance(route, Route) and route.path != "/v1/{call}"}
    assert served - set(document["paths"]) == set()
    from ingest.app import CALLS

    assert {f"/v1/{name}" for name in CALLS} <= set(document["paths"])
    assert all(isinstance(route, Route | Mount) for route in app.routes)


def test_real_answers_match_the_document(collector_settings, tmp_path):
    openapi = OpenAPI.from_dict(collector_openapi())
    auth = (WRITE_KEY, "")
    track = {"type": "track", "event": "Signed Up", "anonymousId": "a-1", "messageId": "m-1"}
    with running_collector(collector_settings, tmp_path) as client:
        loading = client.post("/v1/configs", json={"anonymousId": "a-1"}, auth=auth)
        wait_until(
            lambda: client.get("/v1/configs", params={"anonymousId": "a-1", "writeKey": WRITE_KEY}).status_code == 200,
            30,
            what="the configs loaded",
        )
        answers = [
            ("POST", "/v1/configs", loading, loading.status_code),
            ("POST", "/v1/track", client.post("/v1/track", json=track, auth=auth), 200),
            ("POST", "/v1/t", client.post("/v1/t", json={"anonymousId": "a-1"}, auth=auth), 400),
            ("POST", "/v1/batch", client.post("/v1/batch", json={"batch": [track, "no"]}, auth=auth), 200),
            ("POST", "/v1/batch", client.post("/v1/batch", json={"batch": ["no"]}, auth=auth), 400),
            ("POST", "/v1/track", client.post("/v1/track", json=track), 401),
            ("POST", "/v1/track", client.post("/v1/track", json=track, auth=("nope", "")), 401),
            ("POST", "/v1/track", client.post("/v1/track", content=b"{not json", auth=auth), 400),
            (
                "GET",
                "/v1/pixel",
                client.get("/v1/pixel", params={"writeKey": WRITE_KEY, "data": base64.b64encode(orjson.dumps(track)).decode()}),
                200,
            ),
            ("POST", "/v1/configs", client.post("/v1/configs", json={"anonymousId": "a-1"}, auth=auth), 200),
            ("POST", "/v1/configs", client.post("/v1/configs", json={"anonymousId": "null"}, auth=auth), 400),
            ("GET", "/v1/configs", client.get("/v1/configs", params={"anonymousId": "a-1", "writeKey": WRITE_KEY}), 200),
            ("GET", "/healthz", client.get("/healthz"), 200),
            ("GET", "/readyz", client.get("/readyz"), 200),
            ("GET", "/metrics", client.get("/metrics"), 200),
            ("GET", f"/v1/projects/{WRITE_KEY}/settings", client.get(f"/v1/projects/{WRITE_KEY}/settings"), 200),
            ("GET", "/openapi.json", client.get("/openapi.json"), 200),
        ]
    for method, path, response, status in answers:
        assert response.status_code == status, (method, path, response.text)
        _documented(openapi, method, path, response)
    refused = answers[2][2].json()["errors"][0]
    assert refused == {"field": "event", "reason": "required for track", "rule": "required"}


def test_an_answer_the_document_does_not_allow_is_caught(collector_settings, tmp_path):
    """The check above can fail: an answer missing its rule is not what the document says."""
    openapi = OpenAPI.from_dict(collector_openapi())
    request = MockRequest(HOST, "post", "/v1/track")
    wrong = MockResponse(orjson.dumps({"success": False, "errors": [{"field": "event", "reason": "x"}]}), status_code=400)
    with pytest.raises(Exception, match="[Vv]alidat|[Ii]nvalid"):
        openapi.validate_response(request, wrong)
