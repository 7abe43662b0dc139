"""Config targeting on segments, lists, tags, lifecycle stages and status, through the whole system against a real
broker and ClickHouse: the management API writes users, lists, segments and configs; the segment evaluator
publishes membership (profile-changes and person-segments); the collector serves each config from what its
worker follows (person-properties, person-segments) and switches when a person enters or leaves; the user's
Configs view decides the same; a lost person-segments record heals when the evaluator restarts."""

from __future__ import annotations

import uuid

import httpx
import pytest
from confluent_kafka import Producer

from projections.segment_evaluator import SegmentEvaluator
from tests.api_support import api_stack, stack_settings
from tests.pipeline import WRITE_KEY

pytestmark = pytest.mark.integration


def group(*conditions, match="all") -> dict:
    return {"kind": "group", "match": match, "conditions": list(conditions)}


def flag(key: str, condition: dict) -> dict:
    """A boolean config that serves true to the people the condition holds for, false to everyone else."""
    return {"key": key, "type": "boolean", "rules": [{"condition": condition, "variant": "true"}]}


def _evaluator(settings, client) -> SegmentEvaluator:
    def query(sql, parameters):
        return client.query(sql.replace("{db}", settings.database), parameters=parameters).result_rows

    return SegmentEvaluator(settings, query)


@pytest.fixture
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as running:
        yield running
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def test_configs_target_segments_lists_tags_stages_and_status(stack, clickhouse_client):
    api, auth = stack.api, stack.auth
    run = uuid.uuid4().hex[:8]
    beta = api.post("/api/v1/lists", json={"name": "Beta", "id": f"beta-{run}"}, headers=auth).json()["id"]
    pros = api.post(
        "/api/v1/segments",
        json={
            "name": "Pros",
            "id": f"pros-{run}",
            "condition": group({"kind": "property", "property": "plan", "operator": "equals", "value": "pro"}),
        },
        headers=auth,
    ).json()["id"]

    def user(**body) -> str:
        made = api.post("/api/v1/users?wait=true", json=body, headers=auth)
        assert made.status_code == 201, made.text
        return made.json()["user"]["person_id"]

    def patch(ref: str, **body) -> None:
        changed = api.patch(f"/api/v1/users/{ref}?wait=true", json=body, headers=auth)
        assert changed.status_code == 200, changed.text

    ann, bob = f"ann-{run}", f"bob-{run}"
    user(user_id=ann, properties={"plan": "pro"}, tags=["vip"], stage="lead")
    bob_id = user(user_id=bob, properties={"plan": "free"}, stage="customer")
    patch(bob_id, lists={"add": [beta]})

    configs = {
        "in-pros": flag("in-pros", {"kind": "segment", "segment_id": pros}),
        "not-in-pros": flag("not-in-pros", group({"kind": "segment", "operator": "not_in", "segment_id": pros})),
        "in-beta": flag("in-beta", group({"kind": "list", "list_id": beta})),
        "vip": flag("vip", {"kind": "tag", "tag": "vip"}),
        "customers": flag("customers", {"kind": "stage", "stages": ["customer"]}),
        "disabled": flag("disabled", {"kind": "status", "status": "disabled"}),
        "known": flag("known", group({"kind": "identity", "identity": "identified"}, {"kind": "identity", "identity": "contact"})),
    }
    for body in configs.values():
        created = api.post("/api/v1/configs", json=body, headers=auth)
        assert created.status_code == 201, created.text

    # refusals name the field: unknown ids, and kinds only ClickHouse can decide
    refusals = [
        (
            flag("x", group({"kind": "tag", "tag": "t"}, {"kind": "segment", "segment_id": "nope"})),
            "rules.0.condition.conditions.1.segment_id",
        ),
        (flag("x", {"kind": "list", "list_id": "nope"}), "rules.0.condition.list_id"),
        (flag("x", group({"kind": "event", "event": "Order Completed"})), "rules.0.condition.conditions.0"),
        (flag("x", {"kind": "last_seen", "days": 3}), "rules.0.condition"),
    ]
    for body, field in refusals:
        refused = api.post("/api/v1/configs", json=body, headers=auth)
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field], refused.json()
    changed = api.patch("/api/v1/configs/vip", json={"rules": [{"condition": {"kind": "segment", "segment_id": "gone"}, "variant": "true"}]}, headers=auth)  # fmt: skip
    assert changed.status_code == 422 and changed.json()["errors"][0]["field"] == "rules.0.condition.segment_id"

    evaluator = _evaluator(stack.settings, clickhouse_client)
    assert evaluator.step() == [pros]

    def served(user_id: str) -> dict[str, bool] | None:
        response = httpx.post(f"{stack.collector_url}/v1/configs", json={"userId": user_id}, auth=(WRITE_KEY, ""), timeout=10)
        if response.status_code != 200:
            return None
        return {key: answer["value"] for key, answer in response.json()["configs"].items() if key in configs}

    def serves(user_id: str, expected: dict[str, bool], what: str) -> None:
        stack.wait(lambda: served(user_id) == expected, what, timeout_s=60)

    serves(ann, {"in-pros": True, "not-in-pros": False, "in-beta": False, "vip": True, "customers": False, "disabled": False, "known": True}, "ann's configs")  # fmt: skip
    serves(bob, {"in-pros": False, "not-in-pros": True, "in-beta": True, "vip": False, "customers": True, "disabled": False, "known": True}, "bob's configs")  # fmt: skip
    anonymous = served(f"nobody-{run}-device") or {}
    assert anonymous.get("known") is True  # a userId alone makes the subject identified before any profile exists

    def now_in_view(user_id: str) -> dict[str, bool]:
        view = api.get(f"/api/v1/users/user_id:{user_id}/configs", headers=auth).json()["configs"]
        return {c["key"]: c["now"]["value"] for c in view if c["key"] in configs}

    def view_agrees() -> bool:
        """The API decides from the same facts, but reads memberships from ClickHouse, which the projector
        fills a moment after the collectors see the same change on person-segments."""
        return now_in_view(ann) == served(ann) and now_in_view(bob) == served(bob)

    stack.wait(view_agrees, "the API's view to agree with what is served", timeout_s=60)

    # Ann leaves the segment and Bob enters it; Ann loses her tag and becomes a customer; Bob is disabled and leaves the list.
    patch(f"user_id:{bob}", set={"plan": "pro"}, status="disabled", lists={"remove": [beta]})
    patch(f"user_id:{ann}", set={"plan": "free"}, tags={"remove": ["vip"]}, stage="customer")
    assert evaluator.step() == [pros]
    serves(ann, {"in-pros": False, "not-in-pros": True, "in-beta": False, "vip": False, "customers": True, "disabled": False, "known": True}, "ann's new configs")  # fmt: skip
    serves(bob, {"in-pros": True, "not-in-pros": False, "in-beta": False, "vip": False, "customers": True, "disabled": True, "known": True}, "bob's new configs")  # fmt: skip
    stack.wait(view_agrees, "the API's view to agree after the changes", timeout_s=60)

    # what a config targets cannot be deleted from under it
    in_use = api.delete(f"/api/v1/segments/{pros}", headers=auth)
    assert in_use.status_code == 409 and in_use.json()["errors"][0]["rule"] == "in_use" and "in-pros" in in_use.text
    assert api.delete(f"/api/v1/lists/{beta}", headers=auth).status_code == 409

    # A crash lost Bob's person-segments record (a tombstone stands for it): the collector stops seeing him in the
    # segment, and a restarted evaluator puts the record back from its state without deciding anything again.
    evaluator.close()
    producer = Producer({"bootstrap.servers": stack.settings.kafka_bootstrap_servers})
    producer.produce(stack.settings.topics.person_segments.name, None, bob_id)
    assert producer.flush(10) == 0
    stack.wait(lambda: (s := served(bob)) and s["in-pros"] is False, "bob's record lost", timeout_s=30)
    restarted = _evaluator(stack.settings, clickhouse_client)
    restarted.step()
    assert restarted.evaluations == 1  # it evaluated the segment and found no transition to publish
    stack.wait(lambda: (s := served(bob)) and s["in-pros"] is True, "bob's record reconciled", timeout_s=30)
    restarted.close()
