"""The management API against a real broker, processor, projector and ClickHouse: every write a command on
Kafka, applied by the projection, readable with ?wait=true."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from segment import analytics

from schemas.identity import person_id_for
from tests.api_support import ADMIN_KEY, api_stack, stack_settings
from tests.pipeline import WRITE_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, base / "data")
    with api_stack(settings, clickhouse_client, base / "logs") as running:
        yield running
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(stack, **body) -> dict:
    response = stack.api.post("/api/v1/users?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 201, response.text
    return response.json()


# -- auth ----------------------------------------------------------------------------------------------------


def test_the_admin_key_is_required_and_a_write_key_is_not_one(stack):
    missing = stack.api.get("/api/v1/users")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["errors"][0]["field"] == "authorization"
    assert stack.api.get("/api/v1/users", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert stack.api.get("/api/v1/users", headers={"Authorization": f"Bearer {WRITE_KEY}"}).status_code == 403
    assert stack.api.get("/api/v1/users", headers={"Authorization": f"Basic {ADMIN_KEY}"}).status_code == 401
    assert stack.api.get("/api/v1/openapi.json").status_code == 200
    assert stack.api.get("/api/v1/docs").status_code == 200


# -- create, read, 409, 422 ------------------------------------------------------------------------------------


def test_create_then_read_by_every_ref_kind(stack):
    user_id, email = unique("u"), f"{unique('ada')}@Example.com"
    answer = create(
        stack,
        user_id=user_id,
        email=email,
        first_name="Ada",
        last_name="Lovelace",
        city="London",
        properties={"plan": "pro", "seats": 3},
        tags=["vip"],
    )
    assert answer["readable"] is True and answer["command_id"]
    user = answer["user"]
    assert user["person_id"] == answer["person_id"]
    assert user["email"] == email.lower() and user["name"] == "Ada Lovelace" and user["tags"] == ["vip"]
    assert user["properties"] == {
        "user_id": user_id,
        "email": email.lower(),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "city": "London",
        "plan": "pro",
        "seats": 3,
    }
    assert user["status"] == "active" and user["is_identified"] is True and user_id in user["distinct_ids"]
    for ref in (user["person_id"], f"user_id:{user_id}", f"email:{email}", f"distinct_id:{user_id}"):
        response = stack.api.get(f"/api/v1/users/{ref}", headers=stack.auth)
        assert response.status_code == 200, (ref, response.text)
        assert response.json()["person_id"] == user["person_id"]


def test_an_identifier_another_user_has_is_409_naming_that_user(stack):
    user_id, email = unique("u"), f"{unique('dup')}@example.com"
    first = create(stack, user_id=user_id, email=email)
    response = stack.api.post("/api/v1/users", json={"user_id": user_id}, headers=stack.auth)
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert (error["field"], error["rule"], error["person_id"]) == ("user_id", "unique", first["person_id"])
    response = stack.api.post("/api/v1/users", json={"user_id": unique("other"), "email": email.upper()}, headers=stack.auth)
    assert response.status_code == 409 and response.json()["errors"][0]["field"] == "email"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"first_name": "No Id"}, "user_id", "required_identifier"),
        ({"email": "not-an-email"}, "email", "email"),
        ({"user_id": "undefined"}, "user_id", "placeholder"),
        ({"user_id": "u", "properties": {"email": "a@b.co"}}, "properties.email", "default_property"),
        ({"user_id": "u", "properties": {"bad name!": 1}}, "properties.bad name!", "property_name"),
        ({"user_id": "u", "status": "gone"}, "status", "literal_error"),
        ({"user_id": "u", "shoe_size": 44}, "shoe_size", "extra_forbidden"),
        ({"user_id": 5}, "user_id", "string_type"),
    ],
)
def test_a_broken_rule_is_422_naming_the_field_and_the_rule(stack, body, field, rule):
    response = stack.api.post("/api/v1/users", json=body, headers=stack.auth)
    assert response.status_code == 422, response.text
    assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in response.json()["errors"]]


def test_unknown_users_are_404_and_malformed_refs_422(stack):
    for ref in (str(uuid.uuid4()), "user_id:nobody-here", "email:nobody@example.com", "distinct_id:nothing"):
        response = stack.api.get(f"/api/v1/users/{ref}", headers=stack.auth)
        assert response.status_code == 404, ref
        assert stack.api.patch(f"/api/v1/users/{ref}", json={"set": {"a": 1}}, headers=stack.auth).status_code == 404
        assert stack.api.delete(f"/api/v1/users/{ref}", headers=stack.auth).status_code == 404
    assert stack.api.get("/api/v1/users/not-a-ref", headers=stack.auth).json()["errors"][0]["rule"] == "format"


# -- update, tags, status, list ----------------------------------------------------------------------------------


def test_patch_sets_unsets_tags_and_status(stack):
    user_id = unique("u")
    person = create(stack, user_id=user_id, properties={"plan": "free", "old": 1}, tags=["a", "b"])["person_id"]
    response = stack.api.patch(
        f"/api/v1/users/user_id:{user_id}?wait=true",
        json={"set": {"plan": "pro", "city": "Oslo"}, "unset": ["old"], "status": "disabled", "tags": {"add": ["c"], "remove": ["a"]}},
        headers=stack.auth,
    )
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["person_id"] == person and user["status"] == "disabled" and user["tags"] == ["b", "c"]
    assert user["properties"] == {"user_id": user_id, "plan": "pro", "city": "Oslo"}
    listed = stack.api.get("/api/v1/users", params={"tag": "c", "status": "disabled", "properties.plan": "pro"}, headers=stack.auth).json()
    assert person in [u["person_id"] for u in listed["users"]]
    assert stack.api.patch(f"/api/v1/users/{person}", json={"unset": ["user_id"]}, headers=stack.auth).status_code == 422


def test_list_searches_filters_sorts_and_pages_with_a_cursor(stack):
    marker = unique("grace")
    people = [
        create(stack, email=f"{marker}-{n}@example.com", first_name=f"{marker}{n}", properties={"rank": n})["person_id"] for n in range(5)
    ]
    seen, cursor = [], None
    while True:
        params = {"q": marker, "sort": "email", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = stack.api.get("/api/v1/users", params=params, headers=stack.auth).json()
        seen += [u["person_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == people  # email order is creation order here
    filtered = stack.api.get("/api/v1/users", params={"q": marker, "properties.rank": "3"}, headers=stack.auth).json()
    assert [u["person_id"] for u in filtered["users"]] == [people[3]]
    assert stack.api.get("/api/v1/users", params={"sort": "shoe"}, headers=stack.auth).status_code == 422
    assert stack.api.get("/api/v1/users", params={"cursor": "garbage"}, headers=stack.auth).status_code == 422


def test_an_idempotency_key_makes_a_retried_write_a_no_op(stack):
    key = unique("key")
    body = {"user_id": unique("u")}
    first = stack.api.post("/api/v1/users", json=body, headers={**stack.auth, "Idempotency-Key": key})
    again = stack.api.post("/api/v1/users", json=body, headers={**stack.auth, "Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and again.headers["idempotent-replay"] == "true"
    other = stack.api.post("/api/v1/users", json={"user_id": unique("u")}, headers={**stack.auth, "Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["errors"][0]["rule"] == "reused"
    command = first.json()["command_id"]
    stack.wait(lambda: stack.api.get(f"/api/v1/commands/{command}", headers=stack.auth).status_code == 200, "the command applied")
    assert stack.query("SELECT count() FROM {db}.user_commands FINAL WHERE command_id = {c:String}", c=command) == [(1,)]


# -- tracking meets the API ---------------------------------------------------------------------------------------


def test_an_api_created_user_later_identified_by_the_segment_sdk_is_one_person(stack):
    user_id, email = unique("sdk-user"), f"{unique('sdk')}@example.com"
    by_email = create(stack, email=email, properties={"source": "crm"})["person_id"]
    by_user_id = create(stack, user_id=user_id, properties={"plan": "trial"})["person_id"]
    sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
    device, other_device = unique("anon"), unique("anon")
    sdk.track(anonymous_id=device, event="Viewed Pricing")
    sdk.identify(anonymous_id=device, user_id=user_id, traits={"plan": "pro"})
    sdk.identify(anonymous_id=other_device, user_id=unique("new-user"), traits={"email": email})
    sdk.track(anonymous_id=other_device, event="Clicked")

    def persons_of(*distinct_ids):
        return {
            r[1]
            for r in stack.query(
                "SELECT distinct_id, argMax(person_id, version) FROM {db}.person_distinct_ids WHERE distinct_id IN {ids:Array(String)} GROUP BY distinct_id",
                ids=list(distinct_ids),
            )
        }

    stack.wait(lambda: persons_of(device, user_id) == {by_user_id}, "the device joins the API's user")
    stack.wait(lambda: persons_of(other_device) == {by_email}, "the email's new user id joins the API's user")
    user = stack.wait(
        lambda: (u := stack.api.get(f"/api/v1/users/user_id:{user_id}", headers=stack.auth).json())["event_count"] == 2 and u,
        "both events counted on the API's user",
    )
    assert user["person_id"] == by_user_id and user["properties"]["plan"] == "pro"  # tracking's later $set wins
    assert stack.query("SELECT count() FROM {db}.persons FINAL WHERE person_id = {p:String}", p=by_user_id) == [(1,)]
    events = stack.api.get(f"/api/v1/users/{by_user_id}/events", headers=stack.auth).json()["events"]
    assert sorted(e["type"] for e in events if e["type"] != "profile_change") == ["identify", "track"]
    assert {e["event"] for e in events if e["type"] == "profile_change"} >= {"$property_changed"}  # the timeline shows changes
    assert [e["timestamp"] for e in events] == sorted((e["timestamp"] for e in events), reverse=True)  # newest first
    # the device's anonymous person was merged into the API's user: the merges list says so
    merged = stack.wait(
        lambda: (m := stack.api.get(f"/api/v1/users/user_id:{user_id}/merges", headers=stack.auth).json()["merges"]) and m,
        "the device's person listed as merged in",
    )
    assert [m["from_person"] for m in merged] == [person_id_for(device)] and merged[0]["merged_at"]


def test_a_disabled_users_events_are_stored_flagged_and_do_not_change_the_profile(stack):
    user_id = unique("dis")
    person = create(stack, user_id=user_id, properties={"plan": "free"}, status="disabled")["person_id"]
    stack.track("/v1/track", {"userId": user_id, "event": "Upgraded", "properties": {"$set": {"plan": "pro"}}, "messageId": unique("m")})
    flagged = stack.wait(
        lambda: stack.query("SELECT flags FROM {db}.events FINAL WHERE distinct_id = {d:String}", d=user_id), "the event stored"
    )
    assert flagged == [(["user_disabled"],)]
    user = stack.wait(
        lambda: (u := stack.api.get(f"/api/v1/users/{person}", headers=stack.auth).json())["event_count"] == 1 and u, "counted"
    )
    assert user["properties"]["plan"] == "free"
    stack.api.patch(f"/api/v1/users/{person}?wait=true", json={"status": "active"}, headers=stack.auth)
    stack.track("/v1/track", {"userId": user_id, "event": "Upgraded", "properties": {"$set": {"plan": "pro"}}, "messageId": unique("m")})
    stack.wait(lambda: stack.api.get(f"/api/v1/users/{person}", headers=stack.auth).json()["properties"]["plan"] == "pro", "active again")


def test_timeline_events_sessions_and_daily_counts_with_zero_days(stack):
    user_id = unique("tl")
    person = create(stack, user_id=user_id)["person_id"]
    for n in range(3):
        stack.track("/v1/track", {"userId": user_id, "event": "Clicked" if n < 2 else "Bought", "messageId": f"{user_id}-{n}"})
    stack.wait(lambda: stack.api.get(f"/api/v1/users/{person}", headers=stack.auth).json()["event_count"] == 3, "three events")
    # Pages of two, newest first, to the end: the three tracked events, and the `$` rows of the create's changes.
    timeline, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = stack.api.get(f"/api/v1/users/{person}/events", params=params, headers=stack.auth).json()
        timeline += page["events"]
        pages += 1
        if not (cursor := page["next_cursor"]):
            break
    assert [e["timestamp"] for e in timeline] == sorted((e["timestamp"] for e in timeline), reverse=True)
    assert len({e["message_id"] for e in timeline}) == len(timeline) and pages == (len(timeline) + 1) // 2
    tracked = [e["message_id"] for e in timeline if e["type"] != "profile_change"]
    assert sorted(tracked) == [f"{user_id}-{n}" for n in range(3)]
    assert {e["event"] for e in timeline if e["type"] == "profile_change"} == {"$property_changed"}
    assert [
        e["event"] for e in stack.api.get(f"/api/v1/users/{person}/events", params={"event": "Bought"}, headers=stack.auth).json()["events"]
    ] == ["Bought"]
    stack.wait(lambda: stack.api.get(f"/api/v1/users/{person}/sessions", headers=stack.auth).json()["sessions"], "a session")
    counts = stack.api.get(f"/api/v1/users/{person}/event-counts", params={"days": 7}, headers=stack.auth).json()["days"]
    assert len(counts) == 7 and counts[-1] == {"day": datetime.now(UTC).date().isoformat(), "count": 3}
    assert all(day["count"] == 0 for day in counts[:-1])
    clicked = stack.api.get(f"/api/v1/users/{person}/event-counts", params={"days": 2, "event": "Clicked"}, headers=stack.auth).json()[
        "days"
    ]
    assert clicked[-1]["count"] == 2


def test_bulk_edit_by_refs_and_by_filter_is_a_job_to_follow(stack):
    marker = unique("bulk")
    people = [create(stack, user_id=f"{marker}-{n}", properties={"team": marker})["person_id"] for n in range(4)]
    response = stack.api.post(
        "/api/v1/users/bulk",
        json={"refs": [f"user_id:{marker}-0", people[1], "user_id:missing"], "update": {"tags": {"add": ["bulk-tag"]}}},
        headers=stack.auth,
    )
    assert response.status_code == 202
    job = response.json()["job_id"]
    done = stack.wait(lambda: (j := stack.api.get(f"/api/v1/jobs/{job}", headers=stack.auth).json())["state"] == "done" and j, "job done")
    assert (done["matched"], done["sent"], done["applied"], done["not_found"]) == (2, 2, 2, ["user_id:missing"])
    response = stack.api.post(
        "/api/v1/users/bulk", json={"filter": {"properties": {"team": marker}}, "update": {"set": {"tier": "gold"}}}, headers=stack.auth
    )
    job = response.json()["job_id"]
    stack.wait(lambda: stack.api.get(f"/api/v1/jobs/{job}", headers=stack.auth).json()["state"] == "done", "filter job done")
    tagged = stack.api.get("/api/v1/users", params={"tag": "bulk-tag"}, headers=stack.auth).json()["users"]
    assert sorted(u["person_id"] for u in tagged) == sorted(people[:2])
    gold = stack.api.get("/api/v1/users", params={"properties.tier": "gold"}, headers=stack.auth).json()["users"]
    assert sorted(u["person_id"] for u in gold) == sorted(people)
    assert stack.api.get("/api/v1/jobs/nope", headers=stack.auth).status_code == 404
    assert stack.api.post("/api/v1/users/bulk", json={"refs": ["x"]}, headers=stack.auth).status_code == 422


# -- metrics ---------------------------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_commands_and_waits(stack):
    before = stack.api.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    create(stack, user_id=unique("u"))
    stack.api.get("/api/v1/users/user_id:nobody-at-all", headers=stack.auth)
    after = stack.api.get("/metrics").text
    assert _sample(after, "footfall_api_commands_published_total", topic="user-commands") > _sample(
        before.text, "footfall_api_commands_published_total", topic="user-commands"
    )
    assert _sample(after, "footfall_api_waits_total", outcome="readable") >= 1
    assert _sample(after, "footfall_api_write_to_readable_seconds_count") >= 1
    assert _sample(after, "footfall_api_http_requests_total", handler="/api/v1/users", method="POST", status="2xx") >= 1
    assert _sample(after, "footfall_api_http_requests_total", handler="/api/v1/users/{ref}", method="GET", status="4xx") >= 1
    assert "/metrics" not in stack.api.get("/api/v1/openapi.json").json()["paths"]
