"""Delete and erase through the management API, against the real pipeline, then `footfall replay`: a deleted
user's rows are gone from every table and stay gone, later tracking with its ids is a fresh visible user;
an erased user's identifiers are in no table at all, later tracking with them is dropped at the collector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from segment import analytics

from projections.clickhouse import connect
from projections.replay import end_offsets, replay
from schemas.user_commands import id_digest
from tests.api_support import api_stack, stack_settings
from tests.integration.test_replay import SNAPSHOTS, snapshot
from tests.pipeline import WRITE_KEY, topic_values, wait_until

pytestmark = pytest.mark.integration


def querier(client, database: str):
    return lambda sql, **parameters: client.query(sql.replace("{db}", database), parameters=parameters).result_rows


def mentions(query, needle: str) -> dict[str, int]:
    """Rows of any table (views excluded) whose text holds `needle`, per table."""
    tables = [t for (t,) in query("SELECT name FROM system.tables WHERE database = '{db}' AND engine NOT LIKE '%View'")]
    found = {}
    for table in tables:
        count = query(
            f"SELECT count() FROM {{db}}.{table} WHERE positionCaseInsensitive(formatRowNoNewline('JSONEachRow', *), {{s:String}}) > 0",
            s=needle,
        )[0][0]
        if count:
            found[table] = count
    return found


def person_rows(query, distinct_ids: list[str], person_id: str, received_by: datetime | None = None) -> dict[str, int]:
    """What is left of a person in each table, read as analysts read them (FINAL, the views); events received by a time."""
    received_by = received_by or datetime(2200, 1, 1, tzinfo=UTC)
    queries = {
        "events": "SELECT count() FROM {db}.events FINAL WHERE (distinct_id IN {ids:Array(String)} OR person_id = {p:String}) "
        "AND received_at <= {by:DateTime64(3, 'UTC')} AND type != 'profile_change'",
        # the `$` timeline rows of the person's profile changes (keyed by person id)
        "profile_changes": "SELECT count() FROM {db}.events FINAL WHERE person_id = {p:String} AND type = 'profile_change' "
        "AND received_at <= {by:DateTime64(3, 'UTC')}",
        "sessions": "SELECT count() FROM {db}.sessions FINAL WHERE device_key IN {ids:Array(String)} OR distinct_id IN {ids:Array(String)}",
        "persons": "SELECT count() FROM {db}.persons FINAL WHERE person_id = {p:String}",
        "person_distinct_ids": "SELECT count() FROM {db}.person_distinct_ids FINAL WHERE distinct_id IN {ids:Array(String)}",
        "event_counts_daily": "SELECT count() FROM {db}.event_counts_daily WHERE person_id = {p:String}",
        "event_counts_daily_by_distinct_id": "SELECT count() FROM {db}.event_counts_daily_by_distinct_id WHERE distinct_id IN {ids:Array(String)}",
        "person_overrides": "SELECT count() FROM {db}.person_overrides FINAL WHERE into_person = {p:String}",
    }
    return {
        name: query(sql, ids=distinct_ids, p=person_id, by=received_by.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])[0][0]
        for name, sql in queries.items()
    }


def test_delete_and_erase_hold_through_replay(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    tag = uuid.uuid4().hex[:6]
    kept, deleted, erased = f"kept-{tag}", f"deleted-{tag}", f"erased-{tag}"
    erased_email, erased_device, deleted_device = f"secret-{tag}@example.com", f"erased-device-{tag}", f"deleted-device-{tag}"
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        api, auth = stack.api, stack.auth
        people = {}
        for user_id, extra in ((kept, {}), (deleted, {}), (erased, {"email": erased_email})):
            response = api.post("/api/v1/users?wait=true", json={"user_id": user_id, **extra, "properties": {"plan": "pro"}}, headers=auth)
            assert response.status_code == 201, response.text
            people[user_id] = response.json()["person_id"]
        sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
        for user_id, device in ((kept, f"kept-device-{tag}"), (deleted, deleted_device), (erased, erased_device)):
            sdk.page(anonymous_id=device, name="Home", properties={"url": "https://example.com/"})
            sdk.identify(anonymous_id=device, user_id=user_id, traits={"city": "Oslo"})
            sdk.track(user_id=user_id, event="Bought", properties={"note": f"{user_id} bought"})
        stack.wait(
            lambda: all(api.get(f"/api/v1/users/{p}", headers=auth).json()["event_count"] == 3 for p in people.values()),
            "every user's three events counted",
        )
        query = querier(clickhouse_client, settings.database)
        before = person_rows(query, [erased, erased_device], people[erased])
        assert before["events"] == 3
        assert before["profile_changes"] > 0  # its created properties, on its timeline: gone with the erasure below

        deleted_by = datetime.now(UTC)
        response = api.delete(f"/api/v1/users/user_id:{deleted}?wait=true", headers=auth)
        assert response.status_code == 200 and response.json()["readable"] is True
        response = api.post(f"/api/v1/users/email:{erased_email}/erase?wait=true", headers=auth)
        assert response.status_code == 200 and response.json()["erasure_id"]
        assert api.get(f"/api/v1/users/{people[deleted]}", headers=auth).status_code == 404
        assert api.get(f"/api/v1/users/user_id:{erased}", headers=auth).status_code == 404
        stack.wait(lambda: not any(person_rows(query, [deleted, deleted_device], people[deleted]).values()), "the deleted user gone")
        stack.wait(lambda: not any(mentions(query, i) for i in (erased, erased_email, erased_device)), "the erased user's ids in no table")

        audit = api.get("/api/v1/erasures", headers=auth).json()["erasures"]
        assert [(e["person_id"], sorted(e["id_digests"])) for e in audit] == [
            (people[erased], sorted(id_digest(i) for i in (erased, erased_device, erased_email)))
        ]

        # Later tracking: the deleted user's id starts a fresh, visible user; the erased user's is dropped.
        sdk.identify(anonymous_id=f"new-device-{tag}", user_id=deleted, traits={"plan": "returning"})
        sdk.track(user_id=erased, event="Came Back", properties={"note": "must not be kept"})
        fresh = stack.wait(
            lambda: (
                (r := api.get(f"/api/v1/users/user_id:{deleted}", headers=auth)).status_code == 200 and r.json()["properties"] and r.json()
            ),
            "the fresh user of the deleted id, with its traits",
        )
        assert fresh["person_id"] != people[deleted] and fresh["properties"] == {"plan": "returning"}
        dropped = stack.wait(
            lambda: [
                b
                for b in map(orjson.loads, topic_values(settings, settings.topics.dead_letter.name))
                if "erased" in b["problems"][0]["reason"]
            ],
            "the erased user's call recorded as dropped",
        )
        assert dropped[0]["problems"][0]["field"] == "userId" and "must not be kept" not in dropped[0]["payload"]
        assert mentions(query, "Came Back") == {}
        assert api.get(f"/api/v1/users/{people[kept]}", headers=auth).json()["event_count"] == 3

        stack.worker.stop()
        live = stack.projector
        finish = end_offsets(settings, list(live.handlers))
        wait_until(lambda: all(live.committed.get(p, 0) >= end for p, end in finish.items()), 60, what="the projector caught up")
        before = snapshot(clickhouse_client, settings.database)

    report = replay(settings, connect(settings.clickhouse_dsn))
    after = snapshot(clickhouse_client, settings.database)
    for name in SNAPSHOTS:
        assert after[name] == before[name], f"{name} differs after the replay"

    # Events received later keep the stamp they got (Kafka is never rewritten); their live person is the fresh one.
    assert not any(person_rows(query, [deleted_device], people[deleted], received_by=deleted_by).values())
    assert person_rows(query, [deleted], people[deleted], received_by=deleted_by)["events"] == 0
    assert query("SELECT count() FROM {db}.events FINAL WHERE distinct_id = {d:String}", d=deleted) == [(1,)]  # the fresh user's identify
    assert query("SELECT count() FROM {db}.persons FINAL WHERE person_id = {p:String}", p=fresh["person_id"]) == [(1,)]
    assert not any(person_rows(query, [erased, erased_device], people[erased]).values())
    assert not any(mentions(query, i) for i in (erased, erased_email, erased_device))
    assert query("SELECT count() FROM {db}.persons FINAL WHERE person_id = {p:String}", p=people[kept]) == [(1,)]
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {report.previous}")
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")
