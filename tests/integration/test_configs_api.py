"""Configs through the whole system, against a real broker and ClickHouse: the management API writes versions,
the collector serves them on person properties that came through the processors and the projector (the
person-properties topic), exposures reach `events`, and a user's Configs view shows what was served beside
what would be served now, with overrides set and removed from there."""

from __future__ import annotations

import pytest

from api.app import create_app as create_api
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from tests.api_support import wait_ready
from tests.integration.test_collector_support import NO_TESTCLIENT_WARNING, WRITE_KEY, running_collector
from tests.pipeline import processor, projector, wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]
ADMIN = "admin-key-for-the-configs-test-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
LAYOUT = {
    "key": "layout",
    "description": "checkout layout experiment",
    "type": "string",
    "variants": [{"key": "classic", "weight": 50}, {"key": "compact", "weight": 50}, {"key": "pro", "value": "pro-layout"}],
    "rules": [
        {
            "condition": {
                "kind": "group",
                "match": "all",
                "conditions": [{"kind": "property", "property": "plan", "operator": "equals", "value": "pro"}],
            },
            "variant": "pro",
        },
        {"rollout_percent": 100},
    ],
    "default": "classic",
}


@pytest.fixture
def api(settings, clickhouse_client):
    from starlette.testclient import TestClient

    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    app = create_api(settings, ADMIN, ClickHouseReader(clickhouse_client, settings.database))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def test_definitions_versions_and_errors(api):
    assert api.get("/api/v1/configs").status_code == 401
    created = api.post("/api/v1/configs", json=LAYOUT, headers=AS_ADMIN)
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["change"]) == (1, "created")
    assert api.post("/api/v1/configs", json=LAYOUT, headers=AS_ADMIN).status_code == 409
    invalid = api.post("/api/v1/configs", json={**LAYOUT, "key": "other", "default": "nope"}, headers=AS_ADMIN)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "default"
    bad_rule = api.post(
        "/api/v1/configs",
        json={**LAYOUT, "key": "x", "rules": [{"condition": {"kind": "property", "property": "n", "operator": "gt", "value": "ten"}}]},
        headers=AS_ADMIN,
    )
    assert bad_rule.status_code == 422 and "finite number" in bad_rule.text
    updated = api.put("/api/v1/configs/layout", json={**LAYOUT, "description": "v2"}, headers={**AS_ADMIN, "If-Match": "1"})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = api.put("/api/v1/configs/layout", json=LAYOUT, headers={**AS_ADMIN, "If-Match": "1"})
    assert stale.status_code == 412 and stale.json()["errors"][0]["field"] == "If-Match"
    disabled = api.patch("/api/v1/configs/layout", json={"enabled": False}, headers=AS_ADMIN)
    assert (disabled.json()["version"], disabled.json()["enabled"]) == (3, False)
    override = api.put(
        "/api/v1/configs/layout/overrides/ann", json={"variant": "compact", "expires_at": "2030-01-01T00:00:00Z"}, headers=AS_ADMIN
    )
    assert override.json()["overrides"] == [{"ref": "ann", "variant": "compact", "expires_at": "2030-01-01T00:00:00Z", "reason": ""}]
    assert api.put("/api/v1/configs/layout/overrides/bob", json={"variant": "nope"}, headers=AS_ADMIN).status_code == 422
    assert api.delete("/api/v1/configs/layout/overrides/ann", headers=AS_ADMIN).json()["overrides"] == []
    assert api.delete("/api/v1/configs/layout/overrides/ann", headers=AS_ADMIN).status_code == 404
    versions = api.get("/api/v1/configs/layout/versions", headers=AS_ADMIN).json()["versions"]
    assert [(v["version"], v["change"]) for v in versions] == [
        (1, "created"),
        (2, "updated"),
        (3, "updated"),
        (4, "override_set"),
        (5, "override_removed"),
    ]
    assert api.get("/api/v1/configs/layout/versions/2", headers=AS_ADMIN).json()["description"] == "v2"
    assert api.delete("/api/v1/configs/layout", headers=AS_ADMIN).json()["deleted"] is True
    assert api.get("/api/v1/configs/layout", headers=AS_ADMIN).status_code == 404
    assert api.get("/api/v1/configs", headers=AS_ADMIN).json()["configs"] == []
    assert api.post("/api/v1/configs", json=LAYOUT, headers=AS_ADMIN).json()["version"] == 7  # re-created: history kept
    assert "/api/v1/configs/{key}/overrides/{ref}" in api.get("/api/v1/openapi.json").json()["paths"]


def test_served_on_stored_properties_and_the_users_configs_view(api, settings, tmp_path):
    assert api.post("/api/v1/configs", json=LAYOUT, headers=AS_ADMIN).status_code == 201
    with running_collector(settings, tmp_path) as collector, processor(settings, tmp_path / "logs") as worker, projector(settings) as proj:
        sdk = {"X-Write-Key": WRITE_KEY}
        ask = {"anonymousId": "dev-1", "userId": "ann"}

        def serving() -> dict | None:
            response = collector.post("/v1/configs", json=ask, headers=sdk)
            return response.json()["configs"].get("layout") if response.status_code == 200 else None

        before = wait_until(serving, 30, what="the collector serving layout")
        assert before["reason"] == "rule_match" and before["rule"] == 1  # no stored plan yet
        identify = {"anonymousId": "dev-1", "userId": "ann", "traits": {"plan": "pro", "email": "ann@example.com"}}
        assert collector.post("/v1/identify", json=identify, headers=sdk).status_code == 200
        # the trait travels processors → projector → person-properties → every collector worker
        pro = wait_until(lambda: (s := serving()) and s["rule"] == 0 and s, 90, what="targeting on the stored plan", watch=(worker, proj))
        assert pro == {"variant": "pro", "value": "pro-layout", "version": 1, "reason": "rule_match", "rule": 0}

        def view() -> dict | None:
            response = api.get("/api/v1/users/user_id:ann/configs", headers=AS_ADMIN)
            if response.status_code != 200:
                return None
            layout = next(c for c in response.json()["configs"] if c["key"] == "layout")
            return layout if layout["last_served"] and layout["last_served"]["variant"] == "pro" else None

        seen = wait_until(view, 90, what="the exposure in the user's view", watch=(worker, proj))
        assert seen["now"]["variant"] == "pro" and seen["differs"] is False and seen["last_served"]["count"] >= 1
        assert seen["last_served"]["version"] == 1
        # the pro rule goes away: what would be served now differs from what was served
        changed = api.put("/api/v1/configs/layout", json={**LAYOUT, "rules": [{"rollout_percent": 100}]}, headers=AS_ADMIN)
        assert changed.json()["version"] == 2
        after = next(c for c in api.get("/api/v1/users/user_id:ann/configs", headers=AS_ADMIN).json()["configs"] if c["key"] == "layout")
        assert after["differs"] is True and after["version_changed"] is True
        assert after["now"]["reason"] == "rule_match" and after["now"]["variant"] in {"classic", "compact"}
        # an override set from the user's view is served, and removed again
        assert api.put("/api/v1/users/user_id:ann/configs/layout/override", json={"variant": "pro"}, headers=AS_ADMIN).status_code == 200
        wait_until(lambda: (s := serving()) and s["reason"] == "override", 20, what="the override served")
        view_now = next(c for c in api.get("/api/v1/users/user_id:ann/configs", headers=AS_ADMIN).json()["configs"] if c["key"] == "layout")
        assert view_now["override"]["variant"] == "pro" and view_now["now"]["reason"] == "override"
        assert api.delete("/api/v1/users/user_id:ann/configs/layout/override", headers=AS_ADMIN).status_code == 200
        wait_until(lambda: (s := serving()) and s["reason"] == "rule_match", 20, what="the override removed")
        assert api.get("/api/v1/users/user_id:nobody/configs", headers=AS_ADMIN).status_code == 404
        # an erased user keeps no override: erasing writes a version without it, and the collector stops serving it
        assert api.put("/api/v1/users/user_id:ann/configs/layout/override", json={"variant": "pro"}, headers=AS_ADMIN).status_code == 200
        api.put("/api/v1/configs/layout/overrides/someone-else", json={"variant": "compact"}, headers=AS_ADMIN)
        wait_until(lambda: (s := serving()) and s["reason"] == "override", 20, what="the override served again")
        assert api.post("/api/v1/users/user_id:ann/erase", headers=AS_ADMIN).status_code in (200, 202)
        latest = api.get("/api/v1/configs/layout", headers=AS_ADMIN).json()
        assert latest["change"] == "override_removed" and [o["ref"] for o in latest["overrides"]] == ["someone-else"]
        wait_until(lambda: (s := serving()) and s["reason"] != "override", 20, what="the erased user's override gone from the collector")
