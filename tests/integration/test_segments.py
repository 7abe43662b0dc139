"""Real-time segments on real Kafka and ClickHouse, through the management API: every condition kind and
operator through the preview, CRUD and its per-field refusals, evaluation publishing enters and exits exactly
once (through an evaluator restart and through `footfall replay`), members now and at a past time, paginated,
status, freezing into a list, and the profile's segments and timeline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from projections.clickhouse import connect
from projections.replay import end_offsets, replay
from projections.segment_evaluator import SegmentEvaluator
from tests.api_support import api_stack, stack_settings

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path_factory):
    base = tmp_path_factory.mktemp("segments")
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, base / "data")
    with api_stack(settings, clickhouse_client, base / "logs") as running:
        yield running
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def group(*conditions, match="all") -> dict:
    return {"kind": "group", "match": match, "conditions": list(conditions)}


def prop(name, operator, value=None) -> dict:
    return {"kind": "property", "property": name, "operator": operator, **({"value": value} if value is not None else {})}


def create(stack, **body) -> str:
    response = stack.api.post("/api/v1/users?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 201, response.text
    return response.json()["user"]["person_id"]


def patch(stack, ref: str, **body) -> None:
    response = stack.api.patch(f"/api/v1/users/{ref}?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 200, response.text


def track(stack, user_id: str | None, event: str, days_ago: float, anonymous_id: str | None = None, **properties) -> None:
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    ids = {"userId": user_id} if user_id else {"anonymousId": anonymous_id}
    stack.track(
        "/v1/track",
        {
            **ids,
            "event": event,
            "properties": properties,
            "timestamp": at,
            "sentAt": datetime.now(UTC).isoformat(),
            "messageId": str(uuid.uuid4()),
        },
    )


def preview(stack, condition: dict) -> set[str]:
    response = stack.api.post("/api/v1/segments/preview", json={"condition": condition, "sample": 100}, headers=stack.auth)
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["count"] == len(found["sample"])
    assert all(set(row) == {"person_id", "email", "name", "stage", "last_seen"} for row in found["sample"])
    seen = [row["last_seen"] for row in found["sample"]]
    assert seen == sorted(seen, reverse=True)  # the most recently seen first
    if found["sample"]:
        first = stack.api.post("/api/v1/segments/preview", json={"condition": condition, "sample": 1}, headers=stack.auth).json()
        assert (first["count"], first["sample"]) == (found["count"], found["sample"][:1])
    counted = stack.api.post("/api/v1/segments/preview", json={"condition": condition, "sample": 0}, headers=stack.auth).json()
    assert (counted["count"], counted["sample"]) == (found["count"], [])  # the count alone, without a sample
    return {row["person_id"] for row in found["sample"]}


@pytest.fixture(scope="module")
def people(stack) -> dict[str, str]:
    """A: a pro buyer; B: a free, disabled, listed customer with one old order; C: identified, nothing else; D: anonymous."""
    run = uuid.uuid4().hex[:8]
    list_id = stack.api.post("/api/v1/lists", json={"name": "Beta", "id": f"beta-{run}"}, headers=stack.auth).json()["id"]
    a = create(stack, user_id=f"a-{run}", email="ann@acme.io", properties={"plan": "pro", "seats": 5, "signed_up": "2026-01-01T00:00:00Z"}, tags=["vip"], stage="lead")  # fmt: skip
    b = create(stack, user_id=f"b-{run}", email="bob@gmail.com", properties={"plan": "free", "seats": 1, "signed_up": "2026-06-01T00:00:00Z"}, stage="customer")  # fmt: skip
    c = create(stack, user_id=f"c-{run}")
    patch(stack, b, status="disabled", lists={"add": [list_id]})
    for _ in range(3):
        track(stack, f"a-{run}", "Order Completed", 0.01, total=50)
    track(stack, f"a-{run}", "Signup", 20)
    track(stack, f"b-{run}", "Order Completed", 10, total=5)
    track(stack, None, "Viewed", 0.01, anonymous_id=f"anon-{run}")
    ids = {"A": a, "B": b, "C": c, "list": list_id}
    stack.wait(lambda: len(stack.query("SELECT DISTINCT live_person_id FROM {db}.events_resolved WHERE type = 'track'")) >= 3, "the events")
    stack.wait(lambda: stack.query("SELECT count() FROM {db}.persons FINAL WHERE NOT is_identified")[0][0] >= 1, "the anonymous person")
    ids["D"] = stack.query("SELECT person_id FROM {db}.persons FINAL WHERE NOT is_identified")[0][0]
    stack.wait(
        lambda: stack.query("SELECT session_count FROM {db}.persons FINAL WHERE person_id = {p:String}", p=a)[0][0] >= 1, "A's sessions"
    )
    return ids


CASES = [
    ("property equals", group(prop("plan", "equals", "PRO")), "A"),
    ("property in", group(prop("plan", "in", ["pro", "free"])), "AB"),
    ("property not_equals", group(prop("plan", "not_equals", "pro")), "B"),
    ("property not_in", group(prop("plan", "not_in", ["pro"])), "B"),
    ("property contains", group(prop("email", "contains", "ACME")), "A"),
    ("property not_contains", group(prop("email", "not_contains", "acme")), "B"),
    ("property starts_with", group(prop("email", "starts_with", "bob@")), "B"),
    ("property ends_with", group(prop("email", "ends_with", "gmail.com")), "B"),
    ("property gt", group(prop("seats", "gt", 2)), "A"),
    ("property gte", group(prop("seats", "gte", 1)), "AB"),
    ("property lt", group(prop("seats", "lt", 5)), "B"),
    ("property lte", group(prop("seats", "lte", 5)), "AB"),
    ("property before", group(prop("signed_up", "before", "2026-03-01")), "A"),
    ("property after", group(prop("signed_up", "after", "2026-03-01")), "B"),
    ("property is_set", group(prop("email", "is_set")), "AB"),
    ("property is_not_set", group(prop("email", "is_not_set")), "CD"),
    ("derived email domain", group(prop("$email_domain", "equals", "acme.io")), "A"),
    ("derived free mail", group(prop("$is_free_email", "equals", True)), "B"),
    ("derived visitor number", group(prop("$visitor_number", "gte", 1), prop("$is_identified", "equals", False)), "D"),
    ("tag has", group({"kind": "tag", "tag": "vip"}), "A"),
    ("tag has_not", group({"kind": "tag", "operator": "has_not", "tag": "vip"}), "BCD"),
    ("list in", group({"kind": "list", "list_id": "{list}"}), "B"),
    ("list not_in", group({"kind": "list", "operator": "not_in", "list_id": "{list}"}), "ACD"),
    ("stage in", group({"kind": "stage", "stages": ["lead"]}), "A"),
    ("stage not_in", group({"kind": "stage", "operator": "not_in", "stages": ["lead", ""]}), "B"),
    ("status", group({"kind": "status", "status": "disabled"}), "B"),
    ("identified", group({"kind": "identity", "identity": "identified"}), "ABC"),
    ("anonymous", group({"kind": "identity", "identity": "anonymous"}), "D"),
    ("contact", group({"kind": "identity", "identity": "contact"}), "ABC"),
    ("not contact", group({"kind": "identity", "identity": "not_contact"}), "D"),
    ("event at least", group({"kind": "event", "event": "Order Completed", "operator": "at_least", "count": 2, "days": 7}), "A"),
    ("event in a window", group({"kind": "event", "event": "Order Completed", "count": 1, "days": 30}), "AB"),
    ("event at most", group({"kind": "event", "event": "Order Completed", "operator": "at_most", "count": 0, "days": 30}), "CD"),
    ("event at most 1", group({"kind": "event", "event": "Order Completed", "operator": "at_most", "count": 1, "days": 30}), "BCD"),
    (
        "event with a filter",
        group({"kind": "event", "event": "Order Completed", "count": 1, "days": 30, "where": prop("total", "lt", 10)}),
        "B",
    ),
    ("event outside the window", group({"kind": "event", "event": "Signup", "count": 1, "days": 7}), ""),
    (
        "session count",
        group({"kind": "session_count", "operator": "gte", "value": 1}, {"kind": "identity", "identity": "identified"}),
        "AB",
    ),
    ("session count zero", group({"kind": "session_count", "operator": "equals", "value": 0}), "C"),
    ("last seen within", group({"kind": "last_seen", "days": 3}, prop("email", "is_set")), "A"),
    ("last seen not within", group({"kind": "last_seen", "operator": "not_within", "days": 3}, prop("email", "is_set")), "B"),
    ("or", group(prop("plan", "equals", "pro"), {"kind": "status", "status": "disabled"}, match="any"), "AB"),
    ("nested", group(group(prop("seats", "gt", 2), prop("seats", "lt", 2), match="any"), prop("email", "ends_with", ".io")), "A"),
    ("empty any", group(match="any"), ""),
]


@pytest.mark.parametrize(("name", "condition", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_condition_kind_and_operator_through_the_preview(stack, people, name, condition, expected):
    condition = orjson.loads(orjson.dumps(condition).replace(b"{list}", people["list"].encode()))
    assert preview(stack, condition) == {people[letter] for letter in expected}


def test_segment_membership_of_another_segment_and_crud_refusals(stack, people):
    vip = stack.api.post(
        "/api/v1/segments", json={"name": "VIPs", "id": "vips", "condition": group({"kind": "tag", "tag": "vip"})}, headers=stack.auth
    )
    assert vip.status_code == 201, vip.text
    assert vip.json()["status"]["state"] == "pending" and vip.json()["evaluation"] == "on profile changes and every interval"
    built_on = group({"kind": "segment", "segment_id": "vips"}, prop("plan", "equals", "free"), match="any")
    assert preview(stack, built_on) == {people["A"], people["B"]}
    assert preview(stack, group({"kind": "segment", "operator": "not_in", "segment_id": "vips"})) == {people[x] for x in "BCD"}
    made = stack.api.post("/api/v1/segments", json={"name": "On VIPs", "id": "on-vips", "condition": built_on}, headers=stack.auth)
    assert made.status_code == 201

    refusals = [
        ({"name": "x", "condition": group(prop("$last_seen", "contains", "x"))}, "condition.conditions.0.operator"),
        ({"name": "x", "condition": group({"kind": "segment", "segment_id": "nope"})}, "condition"),
        ({"name": "x", "condition": group({"kind": "event", "event": "E", "count": 0})}, "condition.conditions.0.event"),
        ({"name": "", "condition": group()}, "name"),
        ({"name": "x", "id": "bad id", "condition": group()}, "id"),
    ]
    for body, field in refusals:
        refused = stack.api.post("/api/v1/segments", json=body, headers=stack.auth)
        assert refused.status_code == 422, refused.text
        assert any(e["field"].startswith(field) for e in refused.json()["errors"]), refused.json()
    assert (
        stack.api.post("/api/v1/segments", json={"name": "again", "id": "vips", "condition": group()}, headers=stack.auth).status_code
        == 409
    )
    circular = stack.api.patch(
        "/api/v1/segments/vips", json={"condition": group({"kind": "segment", "segment_id": "on-vips"})}, headers=stack.auth
    )
    assert circular.status_code == 422 and "circular" in circular.text
    in_use = stack.api.delete("/api/v1/segments/vips", headers=stack.auth)
    assert in_use.status_code == 409 and in_use.json()["errors"][0]["rule"] == "in_use"
    renamed = stack.api.patch("/api/v1/segments/on-vips", json={"name": "VIPs or free"}, headers=stack.auth)
    assert renamed.status_code == 200 and renamed.json()["version"] == 2
    assert [s["id"] for s in stack.api.get("/api/v1/segments", headers=stack.auth).json()["segments"]] == ["vips", "on-vips"]
    assert stack.api.delete("/api/v1/segments/on-vips", headers=stack.auth).status_code == 200
    assert stack.api.get("/api/v1/segments/on-vips", headers=stack.auth).status_code == 404
    assert stack.api.get("/api/v1/segments").status_code == 401


def _evaluator(settings, client) -> SegmentEvaluator:
    def query(sql, parameters):
        return client.query(sql.replace("{db}", settings.database), parameters=parameters).result_rows

    return SegmentEvaluator(settings, query)


def _transitions(stack, segment_id: str) -> list[tuple]:
    return stack.query(
        "SELECT person_id, event, message_id FROM {db}.events FINAL WHERE type = 'profile_change' "
        "AND JSONExtractString(properties, 'subject') = {s:String} ORDER BY timestamp, event",
        s=segment_id,
    )


def test_enter_and_exit_exactly_once_through_a_restart_and_a_replay(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        run = uuid.uuid4().hex[:8]
        a = create(stack, user_id=f"a-{run}", properties={"plan": "pro"})
        b = create(stack, user_id=f"b-{run}", properties={"plan": "free"})
        made = stack.api.post(
            "/api/v1/segments", json={"name": "Pros", "id": "pros", "condition": group(prop("plan", "equals", "pro"))}, headers=stack.auth
        )
        assert made.status_code == 201
        evaluator = _evaluator(settings, clickhouse_client)
        assert evaluator.step() == ["pros"]
        stack.wait(lambda: len(_transitions(stack, "pros")) == 1, "A's entry")
        entered_a = stack.query("SELECT entered_at FROM {db}.segment_members FINAL WHERE person_id = {p:String}", p=a)[0][0]

        patch(stack, b, set={"plan": "pro"})
        patch(stack, a, set={"plan": "free"})
        assert evaluator.step() == ["pros"]  # the persons changed: a property-only segment is due at once
        stack.wait(lambda: len(_transitions(stack, "pros")) == 3, "B's entry and A's exit")
        assert evaluator.step() == []  # nothing changed, nothing due

        # A restarted evaluator knows what was published: it decides nothing again.
        evaluator.close()
        published = end_offsets(settings, [settings.topics.profile_changes.name])
        restarted = _evaluator(settings, clickhouse_client)
        assert restarted.step() == ["pros"] and restarted.evaluations == 1
        assert end_offsets(settings, [settings.topics.profile_changes.name]) == published
        patch(stack, a, set={"plan": "pro"})  # A enters again: a second entry, with an id of its own
        restarted.step()
        stack.wait(lambda: len(_transitions(stack, "pros")) == 4, "A's second entry")
        changes = _transitions(stack, "pros")
        assert [(p, e) for p, e, _ in changes] == [
            (a, "$segment_entered"),
            (b, "$segment_entered"),
            (a, "$segment_exited"),
            (a, "$segment_entered"),
        ]
        assert len({m for _, _, m in changes}) == 4

        members = stack.api.get("/api/v1/segments/pros/members?limit=1", headers=stack.auth).json()
        assert len(members["members"]) == 1 and members["next_cursor"]
        rest = stack.api.get(f"/api/v1/segments/pros/members?limit=1&cursor={members['next_cursor']}", headers=stack.auth).json()
        assert {m["person_id"] for m in members["members"] + rest["members"]} == {a, b} and rest["next_cursor"] is None
        past = stack.api.get("/api/v1/segments/pros/members", params={"at": entered_a.isoformat()}, headers=stack.auth).json()
        assert [m["person_id"] for m in past["members"]] == [a]  # at A's first entry only A was in
        status = stack.wait(
            lambda: (s := stack.api.get("/api/v1/segments/pros", headers=stack.auth).json()["status"])["state"] == "ok" and s, "the status"
        )
        assert status["members"] == 2 and status["duration_ms"] >= 0 and status["stale_seconds"] < 120 and status["error"] is None
        mine = stack.api.get(f"/api/v1/users/{a}/segments?include_exited=true", headers=stack.auth).json()["segments"]
        assert [(s["segment_id"], s["entry"], s["exited_at"] is None) for s in mine] == [("pros", 2, True), ("pros", 1, False)]
        timeline = stack.api.get(f"/api/v1/users/{a}/events", headers=stack.auth).json()
        assert "$segment_entered" in {e["event"] for e in timeline["events"]}
        people_in = stack.api.get("/api/v1/users?segment=pros", headers=stack.auth).json()["users"]
        assert {u["person_id"] for u in people_in} == {a, b}

        frozen = stack.api.post("/api/v1/segments/pros/freeze", json={"name": "Pros, frozen"}, headers=stack.auth)
        assert frozen.status_code == 202, frozen.text
        url = frozen.json()["url"]
        stack.wait(lambda: stack.api.get(url, headers=stack.auth).json()["state"] == "done", "the freeze job")
        listed = stack.api.get(f"/api/v1/lists/{frozen.json()['list_id']}/members", headers=stack.auth).json()["members"]
        assert {m["person_id"] for m in listed} == {a, b} and {m["added_by"] for m in listed} == {"segment:pros"}

        restarted.close()
        live = stack.projector
        stopped_at = end_offsets(settings, list(live.handlers))
        stack.wait(lambda: all(live.committed.get(p, 0) >= end for p, end in stopped_at.items()), "the projector to catch up")
    snapshot = {
        "members": "SELECT segment_id, person_id, entry, entered_at, exited_at, entered_change_id, exited_change_id FROM {db}.segment_members FINAL ORDER BY ALL",
        "events": "SELECT message_id, timestamp, event, person_id, properties FROM {db}.events FINAL WHERE type = 'profile_change' AND event IN ('$segment_entered', '$segment_exited') ORDER BY ALL",
    }
    before = {name: clickhouse_client.query(sql.replace("{db}", settings.database)).result_rows for name, sql in snapshot.items()}
    assert len(before["members"]) == 3 and len(before["events"]) == 4

    report = replay(settings, connect(settings.clickhouse_dsn))

    after = {name: clickhouse_client.query(sql.replace("{db}", settings.database)).result_rows for name, sql in snapshot.items()}
    assert after == before
    # An evaluator started after the replay publishes nothing new either.
    published = end_offsets(settings, [settings.topics.profile_changes.name])
    again = _evaluator(settings, clickhouse_client)
    assert again.step() == ["pros"]
    assert end_offsets(settings, [settings.topics.profile_changes.name]) == published
    again.close()
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {report.previous}")
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")
