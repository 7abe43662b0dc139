"""Property definitions through the management API, against a real broker and ClickHouse: definitions are
versioned records on Kafka, and every rule and constraint kind refuses a user write (422) naming the
property and the rule; a unique value another user holds is a 409 naming that user."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import ApiConfig, create_app
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from schemas.properties import PropertyDefinition
from tests.api_support import wait_ready
from tests.pipeline import processor, projector, read_topic

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-key"}

DEFINITIONS = [
    {"name": "plan", "type": "enum", "options": ["free", "pro"]},
    {"name": "age", "type": "integer", "minimum": 18, "maximum": 130},
    {"name": "score", "type": "number", "maximum": 1},
    {"name": "vip", "type": "boolean"},
    {"name": "renews_at", "type": "datetime"},
    {"name": "backup_email", "type": "email"},
    {"name": "mobile", "type": "phone"},
    {"name": "homepage", "type": "url"},
    {"name": "nickname", "type": "string", "min_length": 2, "max_length": 8, "pattern": "^[a-z]+$"},
    {"name": "account", "type": "string", "unique": True},
]

# (property, value, rule): every type and every constraint kind refused.
REFUSED = [
    ("plan", "gold", "options"),
    ("age", 17, "minimum"),
    ("age", 131, "maximum"),
    ("age", 18.5, "type"),
    ("score", 1.5, "maximum"),
    ("score", "high", "type"),
    ("vip", "yes", "type"),
    ("renews_at", "next tuesday", "type"),
    ("backup_email", "nobody", "type"),
    ("mobile", "12", "type"),
    ("homepage", "javascript:alert(1)", "type"),
    ("nickname", "a", "min_length"),
    ("nickname", "abcdefghi", "max_length"),
    ("nickname", "Ab", "pattern"),
    ("nickname", 7, "type"),
]


@pytest.fixture
def api(settings, clickhouse_client):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    app = create_app(
        settings, "test-admin-key", ClickHouseReader(clickhouse_client, settings.database), config=ApiConfig(wait_timeout_s=90)
    )
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def define(api, body: dict) -> dict:
    answer = api.post("/api/v1/property-definitions", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_definitions_are_versioned_records_on_kafka(api, settings):
    assert define(api, {"name": "plan", "type": "enum", "options": ["free", "pro"]})["version"] == 1
    assert api.post("/api/v1/property-definitions", json={"name": "plan", "type": "string"}, headers=ADMIN).status_code == 409
    replaced = api.put(
        "/api/v1/property-definitions/plan", json={"type": "enum", "options": ["free", "pro", "team"], "version": 1}, headers=ADMIN
    )
    assert replaced.status_code == 200 and replaced.json()["version"] == 2
    stale = api.put("/api/v1/property-definitions/plan", json={"type": "string", "version": 1}, headers=ADMIN)
    assert stale.status_code == 409 and stale.json()["errors"][0]["field"] == "version"
    assert api.get("/api/v1/property-definitions/plan", headers=ADMIN).json()["options"] == ["free", "pro", "team"]
    assert api.delete("/api/v1/property-definitions/plan", headers=ADMIN).json() == {"name": "plan", "deleted": True, "version": 3}
    assert api.get("/api/v1/property-definitions/plan", headers=ADMIN).status_code == 404
    records = [PropertyDefinition.model_validate_json(m.value()) for m in read_topic(settings, settings.topics.property_definitions.name)]
    assert [(r.name, r.version, r.deleted) for r in records] == [("plan", 1, False), ("plan", 2, False), ("plan", 3, True)]


def test_built_in_defaults_are_listed_typed_and_kept(api):
    listed = {d["name"]: d for d in api.get("/api/v1/property-definitions", headers=ADMIN).json()["definitions"]}
    assert listed["email"]["type"] == "email" and listed["email"]["built_in"] is True
    assert {"user_id", "email", "phone", "first_name", "last_name", "customer_id", "name", "company", "city", "country", "timezone"} <= set(
        listed
    )
    assert api.delete("/api/v1/property-definitions/email", headers=ADMIN).json()["errors"][0]["rule"] == "built_in"
    assert api.put("/api/v1/property-definitions/email", json={"type": "string"}, headers=ADMIN).json()["errors"][0]["rule"] == "type"
    tightened = api.put("/api/v1/property-definitions/company", json={"type": "string", "required": True, "max_length": 50}, headers=ADMIN)
    assert tightened.status_code == 200 and tightened.json()["built_in"] is True
    refused = api.post("/api/v1/users", json={"user_id": "u-1"}, headers=ADMIN)
    assert refused.status_code == 422 and {(e["field"], e["rule"]) for e in refused.json()["errors"]} == {("company", "required")}


def test_an_inconsistent_definition_is_refused_naming_the_rule(api):
    answer = api.post("/api/v1/property-definitions", json={"name": "tier", "type": "enum"}, headers=ADMIN)
    assert answer.status_code == 422 and answer.json()["errors"][0]["rule"] == "options"
    answer = api.post("/api/v1/property-definitions", json={"name": "code", "type": "string", "pattern": "(a)\\1"}, headers=ADMIN)
    assert answer.status_code == 422 and answer.json()["errors"][0]["rule"] == "pattern"


def test_every_rule_and_constraint_kind_refuses_a_user_write(api):
    for body in DEFINITIONS:
        define(api, body)
    for name, value, rule in REFUSED:
        created = api.post("/api/v1/users", json={"user_id": f"u-{name}", "properties": {name: value}}, headers=ADMIN)
        assert created.status_code == 422, (name, value, created.text)
        [error] = created.json()["errors"]
        assert (error["field"], error["rule"]) == (name, rule), (value, error)
        assert error["value_type"] and error["message"]
    refused = api.post("/api/v1/users", json={"user_id": "u-2", "email": "not-an-address"}, headers=ADMIN)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "email"


def test_required_refuses_a_create_without_it_and_an_unset(api):
    define(api, {"name": "segment", "type": "string", "required": True})
    created = api.post("/api/v1/users", json={"user_id": "u-3"}, headers=ADMIN)
    assert created.status_code == 422 and [(e["field"], e["rule"]) for e in created.json()["errors"]] == [("segment", "required")]
    patched = api.patch("/api/v1/users/user_id:u-3", json={"unset": ["segment"]}, headers=ADMIN)
    assert patched.status_code == 422 and patched.json()["errors"][0]["rule"] == "required"  # refused before the lookup


def test_valid_values_are_accepted_and_a_unique_value_is_held_once(api, settings, tmp_path):
    for body in DEFINITIONS:
        define(api, body)
    properties = {
        "plan": "pro",
        "age": 40,
        "score": 0.5,
        "vip": True,
        "renews_at": "2027-01-01T00:00:00Z",
        "backup_email": "a@example.com",
        "mobile": "+44 20 7946 0018",
        "homepage": "https://example.com",
        "nickname": "ann",
        "account": "acc-1",
    }
    with processor(settings, tmp_path / "logs"), projector(settings):  # the claim goes through the identity sequencer
        answer = api.post("/api/v1/users?wait=true", json={"user_id": "u-ok", "properties": properties}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    stored = answer.json()["user"]["properties"]
    assert {k: stored[k] for k in properties} == properties
    taken = api.post("/api/v1/users", json={"user_id": "u-other", "properties": {"account": "acc-1"}}, headers=ADMIN)
    assert taken.status_code == 409, taken.text
    [error] = taken.json()["errors"]
    assert (error["field"], error["rule"], error["person_id"]) == ("account", "unique", answer.json()["person_id"])


def test_the_openapi_document_lists_the_definition_endpoints(api):
    paths = orjson.loads(api.get("/api/v1/openapi.json").content)["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/property-definitions"])
    assert {"get", "put", "delete"} <= set(paths["/api/v1/property-definitions/{name}"])
