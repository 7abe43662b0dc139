"""Deals, tickets and activities against the real pipeline: object types with their stages and property
definitions, a deal linked to two users moved through its stages with profile changes published for both,
a stage effect moving the linked users' lifecycle stage, lists filtered by stage and owner and paged, links
edited, delete and erase of a user removing their links but leaving the object, and `footfall replay`
rebuilding the same objects and links."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from segment import analytics

from projections.clickhouse import connect
from projections.replay import end_offsets, replay
from schemas.profile_changes import ProfileChange, change_id_of
from tests.api_support import api_stack, stack_settings
from tests.pipeline import WRITE_KEY, wait_until

pytestmark = pytest.mark.integration

OBJECT_SNAPSHOTS = {
    "objects": "SELECT * EXCEPT (version) FROM {db}.objects FINAL ORDER BY object_type, object_id",
    "object_links": "SELECT * EXCEPT (version) FROM {db}.object_links FINAL ORDER BY object_type, object_id, link_kind, link_id",
}


def object_snapshot(client, database: str) -> dict[str, list[tuple]]:
    return {name: client.query(sql.format(db=database)).result_rows for name, sql in OBJECT_SNAPSHOTS.items()}


def profile_changes(settings) -> list[ProfileChange]:
    """Everything on the profile-changes topic now."""
    topic = settings.topics.profile_changes.name
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found, remaining = [], {p for p, end in ends.items() if end > 0}
        while remaining:
            for message in consumer.consume(500, timeout=1):
                if message.error():
                    continue
                found.append(ProfileChange.model_validate_json(message.value()))
                if message.offset() + 1 >= ends[message.partition()]:
                    remaining.discard(message.partition())
        return found
    finally:
        consumer.close()


def test_a_deal_linked_to_two_users_moves_through_its_stages_and_holds_through_delete_erase_and_replay(
    kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path
):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    tag = uuid.uuid4().hex[:6]
    ann, bob, carol = (f"{name}-{tag}" for name in ("ann", "bob", "carol"))
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        api, auth = stack.api, stack.auth
        get = lambda path: api.get(f"/api/v1{path}", headers=auth)  # noqa: E731 - a one-line reader for this test
        sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
        for user in (ann, bob, carol):
            sdk.identify(user_id=user, traits={"email": f"{user}@example.com"})
        ids = {
            user: stack.wait(lambda user=user: (r := get(f"/users/user_id:{user}")).status_code == 200 and r.json()["person_id"], user)
            for user in (ann, bob, carol)
        }
        created = api.post("/api/v1/companies?wait=true", json={"company_id": f"acme-{tag}", "name": "Acme"}, headers=auth)
        assert created.status_code == 201, created.text

        # The deal type: its default stages, a typed property and a stage effect (won → customer).
        types = {t["name"]: t for t in get("/object-types").json()["object_types"]}
        assert types["ticket"]["stages"] == ["new", "open", "pending", "solved"] and types["activity"]["stages"] == ["planned", "done"]
        redefined = api.put(
            "/api/v1/object-types/deal",
            json={
                "stages": ["open", "won", "lost"],
                "closed_stages": ["won", "lost"],
                "properties": [{"name": "amount", "type": "integer", "minimum": 0, "required": True}],
                "stage_effects": {"won": "customer"},
            },
            headers=auth,
        )
        assert redefined.status_code == 200, redefined.text
        bad_type = api.put("/api/v1/object-types/project", json={"stages": ["todo"], "closed_stages": ["done"]}, headers=auth)
        assert bad_type.status_code == 422 and "closed stage" in bad_type.text
        project = api.put(
            "/api/v1/object-types/project",
            json={
                "stages": ["todo", "doing", "done"],
                "closed_stages": ["done"],
                "properties": [{"name": "code", "type": "string", "unique": True}],
            },
            headers=auth,
        )
        assert project.status_code == 201 and project.json()["version"] == 1
        # A unique property: a second project with the same code is a 409 naming the holder; the holder may keep it.
        first = api.post("/api/v1/objects/project?wait=true", json={"id": f"p1-{tag}", "properties": {"code": "ORION"}}, headers=auth)
        assert first.status_code == 201, first.text
        taken = api.post("/api/v1/objects/project", json={"properties": {"code": "ORION"}}, headers=auth)
        assert taken.status_code == 409 and taken.json()["errors"][0] == {
            "field": "properties.code",
            "rule": "unique",
            "message": f"code 'ORION' already belongs to project p1-{tag}",
            "id": f"p1-{tag}",
        }, taken.text
        assert api.patch(f"/api/v1/objects/project/p1-{tag}", json={"set": {"code": "ORION"}}, headers=auth).status_code == 202

        # Per-property 4xx from the type's definitions; unknown stages and users are refused by name.
        bad = api.post("/api/v1/objects/deal", json={"properties": {"amount": -5}}, headers=auth)
        assert bad.status_code == 422 and (bad.json()["errors"][0]["field"], bad.json()["errors"][0]["rule"]) == (
            "properties.amount",
            "minimum",
        )
        missing = api.post("/api/v1/objects/deal", json={"properties": {}}, headers=auth)
        assert missing.status_code == 422 and missing.json()["errors"][0]["rule"] == "required"
        assert api.post("/api/v1/objects/deal", json={"stage": "nope", "properties": {"amount": 1}}, headers=auth).status_code == 422
        nobody = api.post("/api/v1/objects/deal", json={"properties": {"amount": 1}, "links": {"users": ["user_id:nobody"]}}, headers=auth)
        assert nobody.status_code == 404
        assert api.post("/api/v1/objects/spaceship", json={}, headers=auth).status_code == 404

        deal = api.post(
            "/api/v1/objects/deal?wait=true",
            json={
                "id": f"d1-{tag}",
                "owner": "alice",
                "due_at": "2026-12-31T00:00:00Z",
                "properties": {"amount": 5000, "name": "Big one"},
                "links": {"users": [f"user_id:{ann}", f"email:{bob}@example.com"], "companies": [f"acme-{tag}"]},
            },
            headers=auth,
        )
        assert deal.status_code == 201, deal.text
        shown = deal.json()["object"]
        assert (shown["stage"], shown["owner"], shown["closed_at"], shown["properties"]) == (
            "open",
            "alice",
            None,
            {"amount": 5000, "name": "Big one"},
        )
        assert sorted(u["person_id"] for u in shown["users"]) == sorted([ids[ann], ids[bob]])
        assert [c["name"] for c in shown["companies"]] == ["Acme"]
        assert api.post("/api/v1/objects/deal", json={"id": f"d1-{tag}", "properties": {"amount": 1}}, headers=auth).status_code == 409
        other = api.post(
            "/api/v1/objects/deal?wait=true",
            json={"id": f"d2-{tag}", "owner": "bruno", "properties": {"amount": 10}, "links": {"users": [f"user_id:{ann}"]}},
            headers=auth,
        )
        assert other.status_code == 201
        ticket = api.post(
            "/api/v1/objects/ticket?wait=true", json={"id": f"t1-{tag}", "links": {"users": [f"user_id:{carol}"]}}, headers=auth
        )
        assert ticket.status_code == 201 and ticket.json()["object"]["stage"] == "new"

        # Through the stages: won closes it (and makes both users customers), open again reopens it.
        assert api.post(f"/api/v1/objects/deal/d1-{tag}/stage", json={"stage": "lost2"}, headers=auth).status_code == 422
        won = api.post(f"/api/v1/objects/deal/d1-{tag}/stage?wait=true", json={"stage": "won"}, headers=auth)
        assert won.status_code == 200 and won.json()["object"]["stage"] == "won" and won.json()["object"]["closed_at"]
        for user in (ann, bob):
            stack.wait(lambda user=user: get(f"/users/user_id:{user}").json()["stage"] == "customer", f"{user} a customer")
        moved = api.post(f"/api/v1/objects/deal/d1-{tag}/stage?wait=true", json={"stage": "open"}, headers=auth)
        assert moved.json()["object"]["closed_at"] is None
        again = api.post(f"/api/v1/objects/deal/d1-{tag}/stage?wait=true", json={"stage": "lost"}, headers=auth)
        assert again.json()["object"]["stage"] == "lost"
        patched = api.patch(f"/api/v1/objects/deal/d1-{tag}?wait=true", json={"set": {"amount": 6000}, "due_at": None}, headers=auth)
        assert patched.status_code == 200 and patched.json()["object"]["due_at"] is None
        assert patched.json()["object"]["properties"]["amount"] == 6000
        assert api.patch(f"/api/v1/objects/deal/d1-{tag}", json={"set": {"amount": "lots"}}, headers=auth).status_code == 422

        # Lists: by stage, by owner, linked to a user, paged.
        assert [o["id"] for o in get("/objects/deal?stage=lost").json()["objects"]] == [f"d1-{tag}"]
        assert [o["id"] for o in get("/objects/deal?owner=bruno").json()["objects"]] == [f"d2-{tag}"]
        assert [o["id"] for o in get("/objects/deal?stage=open&owner=bruno").json()["objects"]] == [f"d2-{tag}"]
        assert get("/objects/deal?stage=won").json()["objects"] == []
        assert [o["id"] for o in get("/objects/deal?open=true").json()["objects"]] == [f"d2-{tag}"]
        first = get("/objects/deal?limit=1").json()
        second = get(f"/objects/deal?limit=1&cursor={first['next_cursor']}").json()
        assert [o["id"] for o in first["objects"] + second["objects"]] == [f"d1-{tag}", f"d2-{tag}"] and second["next_cursor"] is None
        assert get("/objects/deal?cursor=zzz").status_code == 422
        anns = get(f"/users/user_id:{ann}/objects?type=deal").json()["objects"]
        assert sorted(o["id"] for o in anns) == [f"d1-{tag}", f"d2-{tag}"]
        assert [o["id"] for o in get(f"/users/user_id:{bob}/objects?type=deal").json()["objects"]] == [f"d1-{tag}"]
        assert get(f"/users/user_id:{bob}/objects?type=ticket").json()["objects"] == []
        assert [o["id"] for o in get(f"/objects/deal?company=acme-{tag}").json()["objects"]] == [f"d1-{tag}"]

        # Links: carol joins the ticket's… deal, then leaves it.
        linked = api.post(f"/api/v1/objects/deal/d2-{tag}/links?wait=true", json={"users": [f"user_id:{carol}"]}, headers=auth)
        assert sorted(u["person_id"] for u in linked.json()["object"]["users"]) == sorted([ids[ann], ids[carol]])
        unlinked = api.post(f"/api/v1/objects/deal/d2-{tag}/unlink?wait=true", json={"users": [f"user_id:{carol}"]}, headers=auth)
        assert [u["person_id"] for u in unlinked.json()["object"]["users"]] == [ids[ann]]

        # The outbound stream: every change of d1 for both users, with ids from the command and the person.
        changes = stack.wait(
            lambda: len([c for c in profile_changes(settings) if c.subject == f"deal:d1-{tag}"]) >= 10 and profile_changes(settings),
            "d1's changes for ann and bob",
        )
        d1 = [c for c in changes if c.subject == f"deal:d1-{tag}"]
        for user in (ann, bob):
            mine = [(c.kind, c.before, c.after) for c in d1 if c.person_id == ids[user]]
            assert mine == [
                ("object_created", None, None),
                ("object_stage_changed", "open", "won"),
                ("object_stage_changed", "won", "open"),
                ("object_stage_changed", "open", "lost"),
                ("object_updated", None, None),
            ], user
        assert all(c.change_id == change_id_of(won.json()["command_id"], c.person_id) for c in d1 if c.after == "won")
        carols = [
            c.detail.get("link") or c.detail.get("unlink") for c in changes if c.person_id == ids[carol] and c.subject == f"deal:d2-{tag}"
        ]
        assert carols == [[f"user:{ids[carol]}"], [f"user:{ids[carol]}"]]

        # Memberships on the same stream: joined once (a repeated add changes nothing), then left.
        for _ in range(2):
            joined = api.post(
                f"/api/v1/companies/acme-{tag}/members?wait=true", json={"user": f"user_id:{ann}", "role": "buyer"}, headers=auth
            )
            assert joined.status_code == 200
        assert api.post(f"/api/v1/companies/acme-{tag}/members/user_id:{ann}/end?wait=true", headers=auth).status_code == 200
        memberships = stack.wait(
            lambda: len(m := [c for c in profile_changes(settings) if c.subject == f"acme-{tag}"]) >= 2 and m, "ann joined and left acme"
        )
        assert [(c.kind, c.person_id, c.detail["role"]) for c in memberships] == [
            ("company_joined", ids[ann], "buyer"),
            ("company_left", ids[ann], "buyer"),
        ]

        # A visitor linked to the ticket identifies as ann: the link moves to ann (the survivor).
        sdk.track(anonymous_id=f"device-{tag}", event="Opened chat")
        visitor = stack.wait(
            lambda: (r := get(f"/users/distinct_id:device-{tag}")).status_code == 200 and r.json()["person_id"], "the visitor's profile"
        )
        assert visitor != ids[ann]
        linked = api.post(f"/api/v1/objects/ticket/t1-{tag}/links?wait=true", json={"users": [visitor]}, headers=auth)
        assert sorted(u["person_id"] for u in linked.json()["object"]["users"]) == sorted([visitor, ids[carol]])
        sdk.identify(anonymous_id=f"device-{tag}", user_id=ann)
        stack.wait(
            lambda: sorted(u["person_id"] for u in get(f"/objects/ticket/t1-{tag}").json()["users"]) == sorted([ids[ann], ids[carol]]),
            "the visitor's ticket link moved to ann",
        )

        # Delete bob and erase carol: their links go, the deal and the ticket stay.
        assert api.delete(f"/api/v1/users/user_id:{bob}?wait=true", headers=auth).status_code == 200
        assert api.post(f"/api/v1/users/user_id:{carol}/erase?wait=true", headers=auth).status_code == 200
        stack.wait(lambda: [u["person_id"] for u in get(f"/objects/deal/d1-{tag}").json()["users"]] == [ids[ann]], "d1 without bob")
        stack.wait(
            lambda: [u["person_id"] for u in get(f"/objects/ticket/t1-{tag}").json()["users"]] == [ids[ann]], "the ticket without carol"
        )
        assert get(f"/objects/ticket/t1-{tag}").json()["stage"] == "new"
        assert stack.query("SELECT count() FROM {db}.object_links FINAL WHERE link_id IN {p:Array(String)}", p=[ids[bob], ids[carol]]) == [
            (0,)
        ]
        # A later write to the deal does not bring bob back (his link is forgotten in the object's state too).
        api.patch(f"/api/v1/objects/deal/d1-{tag}?wait=true", json={"owner": "carl"}, headers=auth)
        assert [u["person_id"] for u in get(f"/objects/deal/d1-{tag}").json()["users"]] == [ids[ann]]

        # Delete an object: gone, with its links; its users stay.
        assert api.delete(f"/api/v1/objects/deal/d2-{tag}?wait=true", headers=auth).status_code == 200
        assert get(f"/objects/deal/d2-{tag}").status_code == 404
        assert [o["id"] for o in get(f"/users/user_id:{ann}/objects?type=deal").json()["objects"]] == [f"d1-{tag}"]
        paths = api.get("/api/v1/openapi.json").json()["paths"]
        assert {
            "/api/v1/object-types",
            "/api/v1/object-types/{name}",
            "/api/v1/objects/{object_type}",
            "/api/v1/objects/{object_type}/{object_id}",
            "/api/v1/objects/{object_type}/{object_id}/stage",
            "/api/v1/objects/{object_type}/{object_id}/links",
            "/api/v1/users/{ref}/objects",
        } <= set(paths)

        stack.worker.stop()
        live = stack.projector
        finish = end_offsets(settings, list(live.handlers))
        wait_until(lambda: all(live.committed.get(p, 0) >= end for p, end in finish.items()), 60, what="the projector caught up")
        before = object_snapshot(clickhouse_client, settings.database)
        assert [row[1] for row in before["objects"]] == [f"d1-{tag}", f"p1-{tag}", f"t1-{tag}"]
        assert [(row[1], row[2], row[3]) for row in before["object_links"]] == [
            (f"d1-{tag}", "company", f"acme-{tag}"),
            (f"d1-{tag}", "user", ids[ann]),
            (f"t1-{tag}", "user", ids[ann]),
        ]

    replay(settings, connect(settings.clickhouse_dsn))
    after = object_snapshot(clickhouse_client, settings.database)
    for name in OBJECT_SNAPSHOTS:
        assert after[name] == before[name], f"{name} differs after the replay"
