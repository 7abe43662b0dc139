"""Derived memberships by email domain, per source: only users who sent through a source with
`company_domain_membership` are linked to the company of their domain; a user with the same domain who never
sent through it (created by the API) is not. The CLI composes the setting from the sources file."""

from __future__ import annotations

import uuid

import orjson
import pytest
from segment import analytics

from footfall.cli import _with_domain_sources
from tests.api_support import api_stack, stack_settings
from tests.pipeline import WRITE_KEY

pytestmark = pytest.mark.integration


def test_the_sources_file_names_the_sources_that_link_by_domain(tmp_path, monkeypatch):
    sources = [
        {"id": "web", "write_key": "k1", "company_domain_membership": True},
        {"id": "app", "write_key": "k2"},
    ]
    (tmp_path / "sources.json").write_bytes(orjson.dumps(sources))
    monkeypatch.setenv("FOOTFALL_SOURCES_FILE", str(tmp_path / "sources.json"))
    settings = stack_settings("127.0.0.1:1", "chdb:///nowhere", tmp_path)
    assert _with_domain_sources(settings).company_domain_sources == ["web"]


def test_only_users_of_a_linking_source_are_members_by_their_domain(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data").model_copy(
        update={"company_domain_sources": ["test-source"]}
    )
    tag = uuid.uuid4().hex[:6]
    domain = f"umbrella-{tag}.example"
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        api, auth = stack.api, stack.auth
        get = lambda path: api.get(f"/api/v1{path}", headers=auth)  # noqa: E731 - a one-line reader for this test
        made = api.post("/api/v1/companies?wait=true", json={"company_id": f"umbrella-{tag}", "domain": domain}, headers=auth)
        assert made.status_code == 201, made.text
        by_api = api.post("/api/v1/users?wait=true", json={"user_id": f"bob-{tag}", "email": f"bob@{domain}"}, headers=auth)
        assert by_api.status_code in (200, 201), by_api.text
        sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
        sdk.identify(user_id=f"ann-{tag}", traits={"email": f"ann@{domain}"})
        members = stack.wait(lambda: (m := get(f"/companies/umbrella-{tag}/members").json()["members"]) and m, "ann linked by her domain")
        assert [(m["email"], m["derived"], m["source"]) for m in members] == [(f"ann@{domain}", True, "domain")]
        # Bob's profile changes (a write through the API): he still never sent through the source.
        assert api.patch(f"/api/v1/users/user_id:bob-{tag}?wait=true", json={"set": {"plan": "pro"}}, headers=auth).status_code == 200
        stack.wait(lambda: get(f"/companies/umbrella-{tag}").json()["member_count"] == 1, "one member")
        assert get(f"/users/user_id:bob-{tag}/companies").json()["companies"] == []
        # Once bob sends through the source, he is linked too.
        sdk.identify(user_id=f"bob-{tag}", traits={"plan": "team"})
        stack.wait(lambda: get(f"/companies/umbrella-{tag}").json()["member_count"] == 2, "bob linked after his first call")
