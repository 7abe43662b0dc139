"""Lifecycle stages and static lists on real Kafka and ClickHouse, through the management API: stage definitions,
stages set by the API and by import, rules moving users forward only, a manual move back with its history,
deleting a stage with its users reassigned, lists with members added, removed and snapshotted, and a replay
that rebuilds the stage history and the lists equal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from projections.clickhouse import connect
from projections.replay import end_offsets, replay
from tests.api_support import api_stack, stack_settings

pytestmark = pytest.mark.integration

# The stack's one rule for this module: customer when `orders_placed` is over 0 (no other test sets that property).
CUSTOMER_RULE = {
    "kind": "group",
    "match": "all",
    "conditions": [{"kind": "property", "property": "orders_placed", "operator": "gt", "value": 0}],
}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path_factory):
    base = tmp_path_factory.mktemp("groups")
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, base / "data")
    with api_stack(settings, clickhouse_client, base / "logs") as running:
        yield running
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(stack, **body) -> dict:
    response = stack.api.post("/api/v1/users?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 201, response.text
    return response.json()["user"]


def patch(stack, ref: str, **body) -> dict:
    response = stack.api.patch(f"/api/v1/users/{ref}?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 200, response.text
    return response.json()["user"]


def user(stack, ref: str) -> dict:
    response = stack.api.get(f"/api/v1/users/{ref}", headers=stack.auth)
    assert response.status_code == 200, response.text
    return response.json()


def history(stack, ref: str) -> list[tuple]:
    rows = stack.api.get(f"/api/v1/users/{ref}/stage-history", headers=stack.auth).json()["history"]
    return [(r["from_stage"], r["stage"], r["by"], r["reason"]) for r in rows]


def finish(stack, answer) -> dict:
    assert answer.status_code == 202, answer.text
    url = f"/api/v1/jobs/{answer.json()['job_id']}"
    return stack.wait(
        lambda: (job := stack.api.get(url, headers=stack.auth).json())["state"] in ("done", "failed") and job, "the job to finish"
    )


def stage_ids(stack) -> list[str]:
    return [s["id"] for s in stack.api.get("/api/v1/lifecycle-stages", headers=stack.auth).json()["stages"]]


# -- definitions ---------------------------------------------------------------------------------------------


def test_stage_definitions_add_rename_reorder_and_refusals(stack):
    stages = stack.api.get("/api/v1/lifecycle-stages", headers=stack.auth).json()["stages"]
    assert [s["id"] for s in stages] == [
        "visitor",
        "subscriber",
        "lead",
        "marketing_qualified_lead",
        "sales_qualified_lead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ]
    assert stages[0] == {**stages[0], "name": "Visitor", "position": 0, "built_in": True, "users": 0}

    added = stack.api.post("/api/v1/lifecycle-stages", json={"id": "trial", "name": "Trial", "order": 25}, headers=stack.auth)
    assert added.status_code == 201, added.text
    assert stage_ids(stack)[:4] == ["visitor", "subscriber", "lead", "trial"]
    assert stack.api.post("/api/v1/lifecycle-stages", json={"id": "trial", "name": "Again"}, headers=stack.auth).status_code == 409
    bad = stack.api.post("/api/v1/lifecycle-stages", json={"id": "Not An Id", "name": "x"}, headers=stack.auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("id")

    renamed = stack.api.patch("/api/v1/lifecycle-stages/subscriber", json={"name": "Newsletter subscriber"}, headers=stack.auth)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Newsletter subscriber" and renamed.json()["order"] == 10

    order = stage_ids(stack)
    order.remove("other")
    order.insert(0, "other")
    moved = stack.api.put("/api/v1/lifecycle-stages/order", json={"ids": order}, headers=stack.auth)
    assert moved.status_code == 200, moved.text
    assert [s["id"] for s in moved.json()["stages"]] == order == stage_ids(stack)
    partial = stack.api.put("/api/v1/lifecycle-stages/order", json={"ids": order[:-1]}, headers=stack.auth)
    assert partial.status_code == 422 and partial.json()["errors"][0]["field"] == "ids"
    back = stack.api.put("/api/v1/lifecycle-stages/order", json={"ids": [*order[1:-2], "other", *order[-2:]]}, headers=stack.auth)
    assert back.status_code == 200

    behaviour = {"kind": "group", "conditions": [{"kind": "property", "property": "x", "operator": "equals"}]}
    refused = stack.api.patch("/api/v1/lifecycle-stages/customer", json={"rule": behaviour}, headers=stack.auth)
    assert refused.status_code == 422
    ruled = stack.api.patch("/api/v1/lifecycle-stages/customer", json={"rule": CUSTOMER_RULE}, headers=stack.auth)
    assert ruled.status_code == 200 and ruled.json()["rule"]["conditions"][0]["property"] == "orders_placed"
    assert stack.api.get("/api/v1/lifecycle-stages/nope", headers=stack.auth).status_code == 404


# -- the stage of a user -------------------------------------------------------------------------------------


def test_the_api_sets_a_stage_and_a_move_back_is_kept_with_its_reason(stack):
    created = create(stack, user_id=unique("st"), stage="lead")
    ref = created["person_id"]
    assert created["stage"] == "lead"
    assert patch(stack, ref, stage="opportunity")["stage"] == "opportunity"
    back = patch(stack, ref, stage="lead", stage_reason="the deal fell through")
    assert back["stage"] == "lead"
    assert history(stack, ref) == [
        ("", "lead", "api", ""),
        ("lead", "opportunity", "api", ""),
        ("opportunity", "lead", "api", "the deal fell through"),
    ]
    listed = stack.api.get("/api/v1/users", params={"stage": "lead", "q": ref}, headers=stack.auth).json()["users"]
    assert [u["person_id"] for u in listed] == [ref]
    assert stack.api.get("/api/v1/users", params={"stage": "opportunity", "q": ref}, headers=stack.auth).json()["users"] == []
    unknown = stack.api.patch(f"/api/v1/users/{ref}", json={"stage": "astronaut"}, headers=stack.auth)
    assert unknown.status_code == 422 and unknown.json()["errors"][0] == {**unknown.json()["errors"][0], "field": "stage", "rule": "one_of"}
    assert user(stack, ref)["stage"] == "lead"


def test_a_rule_moves_users_forward_only_and_once(stack):
    ahead, behind = create(stack, user_id=unique("ev"), stage="evangelist"), create(stack, user_id=unique("op"), stage="opportunity")
    patch(stack, ahead["person_id"], set={"orders_placed": 2})
    patch(stack, behind["person_id"], set={"orders_placed": 1})
    stack.wait(lambda: user(stack, behind["person_id"])["stage"] == "customer", "the rule to move the user to customer")
    assert history(stack, behind["person_id"])[-1] == ("opportunity", "customer", "rule:customer", "")
    # Forward only: the evangelist was not moved back to customer.
    assert user(stack, ahead["person_id"])["stage"] == "evangelist"
    assert history(stack, ahead["person_id"]) == [("", "evangelist", "api", "")]
    # A manual move back holds: the rule fired for this user already, and a later profile change does not fire it again.
    patch(stack, behind["person_id"], stage="opportunity", stage_reason="order refunded")
    patch(stack, behind["person_id"], set={"orders_placed": 3})
    later = create(stack, user_id=unique("later"), properties={"orders_placed": 5})
    stack.wait(lambda: user(stack, later["person_id"])["stage"] == "customer", "a later rule move (the projector has passed the refund)")
    assert user(stack, behind["person_id"])["stage"] == "opportunity"
    assert history(stack, behind["person_id"])[-1] == ("customer", "opportunity", "api", "order refunded")


def test_an_import_sets_stages(stack):
    first, second = unique("imp"), unique("imp")
    body = f"user_id,name,Lifecycle Stage\n{first},Ann,subscriber\n{second},Bob,\n{unique('imp')},Cy,astronaut\n".encode()
    started = stack.api.post("/api/v1/imports?dedupe=user_id", content=body, headers={**stack.auth, "Content-Type": "text/csv"})
    assert started.status_code == 202, started.text
    url = f"/api/v1/imports/{started.json()['import_id']}"
    report = stack.wait(lambda: (r := stack.api.get(url, headers=stack.auth).json())["state"] in ("done", "failed") and r, "the import")
    assert (report["state"], report["accepted"], report["rejected"]) == ("done", 2, 1)
    errors = stack.api.get(f"{url}/errors.csv", headers=stack.auth).text
    assert "Lifecycle Stage" in errors and "astronaut" in errors and "one_of" in errors
    stack.wait(lambda: stack.api.get(f"/api/v1/users/user_id:{first}", headers=stack.auth).status_code == 200, "the imported user")
    assert user(stack, f"user_id:{first}")["stage"] == "subscriber"
    assert history(stack, f"user_id:{first}") == [("", "subscriber", "import", "")]
    stack.wait(lambda: stack.api.get(f"/api/v1/users/user_id:{second}", headers=stack.auth).status_code == 200, "the second user")
    assert user(stack, f"user_id:{second}")["stage"] is None


def test_deleting_a_stage_in_use_needs_a_stage_to_move_its_users_to(stack):
    stack.api.post("/api/v1/lifecycle-stages", json={"id": "pilot", "name": "Pilot"}, headers=stack.auth)
    users = [create(stack, user_id=unique("pilot"), stage="pilot")["person_id"] for _ in range(3)]
    refused = stack.api.delete("/api/v1/lifecycle-stages/pilot", headers=stack.auth)
    assert refused.status_code == 409
    assert refused.json()["errors"][0] == {**refused.json()["errors"][0], "field": "move_to", "rule": "required", "users": 3}
    counted = {s["id"]: s for s in stack.api.get("/api/v1/lifecycle-stages", headers=stack.auth).json()["stages"]}
    assert counted["pilot"]["users"] == 3
    picker = {s["id"]: s for s in stack.api.get("/api/v1/lifecycle-stages?counts=false", headers=stack.auth).json()["stages"]}
    assert picker["pilot"]["name"] == "Pilot" and "users" not in picker["pilot"]  # no ClickHouse read for a picker
    assert stack.api.delete("/api/v1/lifecycle-stages/pilot?move_to=pilot", headers=stack.auth).status_code == 422
    assert stack.api.delete("/api/v1/lifecycle-stages/pilot?move_to=nowhere", headers=stack.auth).status_code == 422
    deleted = stack.api.delete("/api/v1/lifecycle-stages/pilot?move_to=lead", headers=stack.auth)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["users"] == 3
    job = stack.wait(
        lambda: (j := stack.api.get(deleted.json()["job_url"], headers=stack.auth).json())["state"] == "done" and j, "the move"
    )
    assert (job["matched"], job["applied"]) == (3, 3)
    assert "pilot" not in stage_ids(stack)
    for person in users:
        assert user(stack, person)["stage"] == "lead"
        assert history(stack, person)[-1] == ("pilot", "lead", "api", "stage Pilot (pilot) deleted")
    assert stack.api.patch(f"/api/v1/users/{users[0]}", json={"stage": "pilot"}, headers=stack.auth).status_code == 422
    # An empty stage goes without a move.
    assert stack.api.delete("/api/v1/lifecycle-stages/trial", headers=stack.auth).status_code == 200


# -- lists ---------------------------------------------------------------------------------------------------


def test_lists_members_added_removed_and_snapshotted(stack):
    made = stack.api.post("/api/v1/lists", json={"name": "Webinar"}, headers=stack.auth)
    assert made.status_code == 201, made.text
    list_id = made.json()["id"]
    renamed = stack.api.patch(f"/api/v1/lists/{list_id}", json={"name": "Webinar attendees"}, headers=stack.auth)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Webinar attendees"
    ann, bob = create(stack, user_id=unique("ann")), create(stack, user_id=unique("bob"))
    tag = unique("tag")
    tagged = [create(stack, user_id=unique("t"), tags=[tag])["person_id"] for _ in range(3)]

    adding = {"refs": [ann["person_id"], f"user_id:{bob['user_id']}", "user_id:nobody"], "by": "ann@example.com"}
    retried = {**stack.auth, "Idempotency-Key": unique("key")}
    first = stack.api.post(f"/api/v1/lists/{list_id}/members", json=adding, headers=retried)
    job = finish(stack, stack.api.post(f"/api/v1/lists/{list_id}/members", json=adding, headers=retried))
    assert job["job_id"] == first.json()["job_id"]  # the retry started no second job
    assert (job["matched"], job["applied"], job["not_found"]) == (2, 2, ["user_id:nobody"])
    before_removal = datetime.now(UTC)
    finish(stack, stack.api.post(f"/api/v1/lists/{list_id}/members/remove", json={"refs": [bob["person_id"]]}, headers=stack.auth))
    snapshot = finish(stack, stack.api.post(f"/api/v1/lists/{list_id}/members", json={"filter": {"tag": tag}}, headers=stack.auth))
    assert snapshot["matched"] == 3
    later = create(stack, user_id=unique("late"), tags=[tag])  # after the snapshot: not added

    members = stack.api.get(f"/api/v1/lists/{list_id}/members", headers=stack.auth).json()["members"]
    assert {m["person_id"]: m["added_by"] for m in members} == {ann["person_id"]: "ann@example.com", **dict.fromkeys(tagged, "snapshot")}
    assert later["person_id"] not in {m["person_id"] for m in members}
    past = stack.api.get(f"/api/v1/lists/{list_id}/members", params={"at": before_removal.isoformat()}, headers=stack.auth).json()[
        "members"
    ]
    assert {m["person_id"] for m in past} == {ann["person_id"], bob["person_id"]}
    assert stack.api.get(f"/api/v1/lists/{list_id}", headers=stack.auth).json()["members"] == 4

    shown = user(stack, ann["person_id"])
    assert shown["lists"] == [{"id": list_id, "name": "Webinar attendees"}]
    memberships = stack.api.get(f"/api/v1/users/{bob['person_id']}/lists", headers=stack.auth).json()["memberships"]
    assert [(m["list_id"], m["added_by"], m["removed_by"], m["removed_at"] is not None) for m in memberships] == [
        (list_id, "ann@example.com", "api", True)
    ]
    in_list = stack.api.get("/api/v1/users", params={"list": list_id, "limit": 100}, headers=stack.auth).json()["users"]
    assert {u["person_id"] for u in in_list} == {ann["person_id"], *tagged}
    # A deleted user no longer counts as a member; a picker gets the lists without counting.
    assert stack.api.delete(f"/api/v1/users/{tagged[0]}?wait=true", headers=stack.auth).status_code == 200
    listed = {d["id"]: d for d in stack.api.get("/api/v1/lists", headers=stack.auth).json()["lists"]}
    assert listed[list_id]["members"] == 3
    picker = {d["id"]: d for d in stack.api.get("/api/v1/lists", params={"counts": "false"}, headers=stack.auth).json()["lists"]}
    assert picker[list_id]["name"] == "Webinar attendees" and "members" not in picker[list_id]

    assert stack.api.post(f"/api/v1/lists/{list_id}/members", json={"refs": ["x"], "filter": {}}, headers=stack.auth).status_code == 422
    assert stack.api.post("/api/v1/lists/nope/members", json={"refs": []}, headers=stack.auth).status_code == 404
    assert stack.api.delete(f"/api/v1/lists/{list_id}", headers=stack.auth).status_code == 200
    assert stack.api.get(f"/api/v1/lists/{list_id}", headers=stack.auth).status_code == 404
    assert user(stack, ann["person_id"])["lists"] == []
    assert list_id not in {d["id"] for d in stack.api.get("/api/v1/lists", headers=stack.auth).json()["lists"]}


# -- replay --------------------------------------------------------------------------------------------------

SNAPSHOTS = {
    "persons": "SELECT person_id, stage, lists FROM {db}.persons FINAL ORDER BY person_id",
    "stage_history": "SELECT * EXCEPT (version) FROM {db}.stage_history FINAL ORDER BY person_id, command_id",
    "list_members": "SELECT * EXCEPT (version) FROM {db}.list_members FINAL ORDER BY list_id, person_id, added_command_id",
    "lists": "SELECT * FROM {db}.lists FINAL ORDER BY list_id",
    "lifecycle_stages": "SELECT * FROM {db}.lifecycle_stages FINAL ORDER BY stage_id",
}


def test_a_replay_rebuilds_stage_history_and_lists_equal(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        assert stack.api.patch("/api/v1/lifecycle-stages/customer", json={"rule": CUSTOMER_RULE}, headers=stack.auth).status_code == 200
        list_id = stack.api.post("/api/v1/lists", json={"name": "Replayed", "id": "replayed"}, headers=stack.auth).json()["id"]
        people = [create(stack, user_id=unique("r"), stage="lead")["person_id"] for _ in range(3)]
        patch(stack, people[0], set={"orders_placed": 1})
        stack.wait(lambda: user(stack, people[0])["stage"] == "customer", "the rule move")
        patch(stack, people[0], stage="opportunity", stage_reason="refund")
        finish(stack, stack.api.post(f"/api/v1/lists/{list_id}/members", json={"refs": people}, headers=stack.auth))
        finish(stack, stack.api.post(f"/api/v1/lists/{list_id}/members/remove", json={"refs": people[1:2]}, headers=stack.auth))
        patch(stack, people[2], lists={"add": [list_id]})  # already a member: no second period
        live = stack.projector
        stopped_at = end_offsets(settings, list(live.handlers))
        stack.wait(lambda: all(live.committed.get(p, 0) >= end for p, end in stopped_at.items()), "the projector to catch up")
    before = {name: clickhouse_client.query(sql.format(db=settings.database)).result_rows for name, sql in SNAPSHOTS.items()}
    assert len(before["stage_history"]) == 5 and len(before["list_members"]) == 3 and before["lists"]

    report = replay(settings, connect(settings.clickhouse_dsn))

    after = {name: clickhouse_client.query(sql.format(db=settings.database)).result_rows for name, sql in SNAPSHOTS.items()}
    for name in SNAPSHOTS:
        assert after[name] == before[name], f"{name} differs after the replay"
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {report.previous}")
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def test_before_the_topics_exist_there_are_no_lists_and_the_default_stages(kafka_bootstrap):
    import asyncio

    from api.groups import Lists, Stages

    prefix = f"test-{uuid.uuid4().hex[:10]}"
    lists, stages = Lists(kafka_bootstrap, f"{prefix}.lists"), Stages(kafka_bootstrap, f"{prefix}.lifecycle-stages")
    try:
        assert asyncio.run(lists.live()) == {}
        assert [s.id for s in asyncio.run(stages.current())][:3] == ["visitor", "subscriber", "lead"]
    finally:
        lists.close()
        stages.close()
