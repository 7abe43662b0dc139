"""The management API's hostile-input corpus (tests/hostile/api_corpus.py) against a real broker and ClickHouse:
every case gets the status it is owed with an error naming its field or rule, and no input gets a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.app import create_app
from api.commands import CommandBus
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from projections.clickhouse import connect
from tests.api_support import ADMIN_KEY, wait_ready
from tests.hostile.api_corpus import CORPUS

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def api(settings):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    bus = CommandBus(settings.kafka_bootstrap_servers)
    app = create_app(settings, ADMIN_KEY, ClickHouseReader(connect(settings.clickhouse_dsn), settings.database), bus=bus)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_ready(client)
            yield client
    finally:
        bus.close()


def named(answer: dict) -> str:
    return " ".join(f"{e.get('field')} {e.get('rule')}" for e in answer.get("errors", [])) or " ".join(answer)


def test_every_case_of_the_corpus_gets_its_answer(api):
    wrong = []
    for case in CORPUS:
        response = api.request(case.method, case.path, content=case.body, headers={**AUTH, **dict(case.headers)})
        answer = response.json()
        if response.status_code != case.status or case.word not in named(answer):
            wrong.append(f"{case.name}: {response.status_code} {named(answer)[:200]}")
    assert not wrong, "\n".join(wrong)
    assert len(CORPUS) > 120


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, where=st.sampled_from(["create", "create-properties", "patch", "patch-set", "bulk"]))
def test_no_json_body_gets_a_5xx(api, value, where):
    body = {
        "create": value,
        "create-properties": {"user_id": "fuzz", "properties": value},
        "patch": value,
        "patch-set": {"set": value},
        "bulk": {"filter": value, "update": {"set": {"a": 1}}},
    }[where]
    method, path = {
        "create": ("POST", "/api/v1/users"),
        "create-properties": ("POST", "/api/v1/users"),
        "bulk": ("POST", "/api/v1/users/bulk"),
    }.get(where, ("PATCH", "/api/v1/users/user_id:fuzz-nobody"))
    response = api.request(method, path, content=json.dumps(body, allow_nan=False), headers={**AUTH, "content-type": "application/json"})
    assert response.status_code < 500, response.text


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.text(min_size=1, max_size=60), q=st.text(max_size=60), cursor=st.text(max_size=60))
def test_no_ref_search_or_cursor_gets_a_5xx(api, ref, q, cursor):
    ref = quote(ref, safe="")
    for path, params in (
        (f"/api/v1/users/{ref}", {}),
        (f"/api/v1/users/{ref}/events", {"cursor": cursor}),
        ("/api/v1/users", {"q": q, "cursor": cursor, f"properties.{q}": ref}),
    ):
        response = api.get(path, params=params, headers=AUTH)
        assert response.status_code < 500, (path, params, response.text)
