"""Stage rules on behaviour, on real Kafka and ClickHouse: "performed Order Completed at least once in the last 30
days" → customer and "has the tag hot" → opportunity, decided by the segment evaluator and sent as stage commands.
Users who track the event (through the collector) move forward, with the rule id in their stage history; a user
already further is never moved back; a manual move back afterwards holds; each move happens exactly once through
an evaluator restart (a duplicate decision folds away) and through `footfall replay`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from projections.clickhouse import connect
from projections.projector import read_to_end
from projections.replay import end_offsets, replay
from projections.segment_evaluator import SegmentEvaluator
from schemas.user_commands import UserCommand
from tests.api_support import api_stack, stack_settings

pytestmark = pytest.mark.integration

BOUGHT = {
    "kind": "group",
    "match": "all",
    "conditions": [{"kind": "event", "event": "Order Completed", "operator": "at_least", "count": 1, "days": 30}],
}
HOT = {"kind": "tag", "operator": "has", "tag": "hot"}


def _evaluator(settings, client) -> SegmentEvaluator:
    def query(sql, parameters):
        return client.query(sql.replace("{db}", settings.database), parameters=parameters).result_rows

    return SegmentEvaluator(settings.model_copy(update={"segments_interval_seconds": 1.0}), query)


def _create(stack, **body) -> str:
    response = stack.api.post("/api/v1/users?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 201, response.text
    return response.json()["user"]["person_id"]


def _patch(stack, ref: str, **body) -> None:
    response = stack.api.patch(f"/api/v1/users/{ref}?wait=true", json=body, headers=stack.auth)
    assert response.status_code == 200, response.text


def _order(stack, user_id: str, days_ago: float = 0) -> str:
    message_id = str(uuid.uuid4())
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    stack.track(
        "/v1/track", {"userId": user_id, "event": "Order Completed", "messageId": message_id, "timestamp": at, "properties": {"total": 10}}
    )
    return message_id


def _stage(stack, ref: str) -> str:
    response = stack.api.get(f"/api/v1/users/{ref}", headers=stack.auth)
    return (response.json()["stage"] or "") if response.status_code == 200 else "(not yet)"  # None: no stage


def _history(stack, ref: str) -> list[tuple]:
    rows = stack.api.get(f"/api/v1/users/{ref}/stage-history", headers=stack.auth).json()["history"]
    return [(r["from_stage"], r["stage"], r["by"], r["reason"]) for r in rows]


def _rule_commands(settings, person_id: str) -> list[UserCommand]:
    def decode(value: bytes) -> UserCommand:
        return UserCommand.model_validate_json(value)

    commands = read_to_end(settings, settings.topics.user_commands.name, decode, f"{settings.topic_prefix}-probe-{uuid.uuid4().hex[:6]}")
    return [c for c in commands if c.person_id == person_id and (c.stage_by or "").startswith("rule:")]


def test_a_behaviour_rule_moves_users_forward_once_through_a_restart_and_a_replay(
    kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path
):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data")
    run = uuid.uuid4().hex[:8]
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        # The API takes any condition of the segment language as a rule, and refuses bad ones naming the field.
        ruled = stack.api.patch("/api/v1/lifecycle-stages/customer", json={"rule": BOUGHT}, headers=stack.auth)
        assert ruled.status_code == 200, ruled.text
        assert (
            ruled.json()["rule"]["conditions"][0]["event"] == "Order Completed" and "segment evaluator" in ruled.json()["rule_evaluation"]
        )
        assert stack.api.patch("/api/v1/lifecycle-stages/opportunity", json={"rule": HOT}, headers=stack.auth).status_code == 200
        refusals = {
            "rule.operator": {"kind": "property", "property": "$session_count", "operator": "contains", "value": "x"},
            "rule": {"kind": "segment", "segment_id": "no-such-segment"},
        }
        for field, rule in refusals.items():
            refused = stack.api.patch("/api/v1/lifecycle-stages/evangelist", json={"rule": rule}, headers=stack.auth)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
        # A rule may name a segment (decided from the segment's own condition); that segment cannot be deleted then.
        nobody = {"kind": "group", "conditions": [{"kind": "tag", "tag": f"nobody-{run}"}]}
        made = stack.api.post("/api/v1/segments", json={"name": "Nobody", "id": f"nobody-{run}", "condition": nobody}, headers=stack.auth)
        assert made.status_code == 201, made.text
        on_segment = {"kind": "segment", "segment_id": f"nobody-{run}"}
        assert stack.api.patch("/api/v1/lifecycle-stages/evangelist", json={"rule": on_segment}, headers=stack.auth).status_code == 200
        in_use = stack.api.delete(f"/api/v1/segments/nobody-{run}", headers=stack.auth)
        assert in_use.status_code == 409 and in_use.json()["errors"][0]["stages"] == ["evangelist"], in_use.text
        zero = stack.api.post(
            "/api/v1/lifecycle-stages",
            json={"id": "x_stage", "name": "X", "rule": {"kind": "event", "event": "e", "count": 0}},
            headers=stack.auth,
        )
        assert zero.status_code == 422 and "rule" in zero.json()["errors"][0]["field"], zero.text

        buyer = _create(stack, user_id=f"buyer-{run}", stage="lead")
        ahead = _create(stack, user_id=f"ahead-{run}", stage="evangelist")
        hot = _create(stack, user_id=f"hot-{run}")
        _order(stack, f"buyer-{run}")
        _order(stack, f"ahead-{run}")
        _order(stack, f"new-{run}")  # tracked only: no stage yet
        _order(stack, f"old-{run}", days_ago=40)  # outside the rule's 30 days
        _patch(stack, hot, tags={"add": ["hot"]})
        newcomer = stack.wait(
            lambda: (
                _stage(stack, f"user_id:new-{run}") == ""
                and stack.api.get(f"/api/v1/users/user_id:new-{run}", headers=stack.auth).json()["person_id"]
            ),
            "the tracked user",
        )
        old = stack.wait(
            lambda: (
                _stage(stack, f"user_id:old-{run}") == ""
                and stack.api.get(f"/api/v1/users/user_id:old-{run}", headers=stack.auth).json()["person_id"]
            ),
            "the user who ordered long ago",
        )
        people = [buyer, ahead, newcomer, old]
        stack.wait(
            lambda: (
                stack.query(
                    "SELECT count() FROM {db}.events_resolved WHERE event = 'Order Completed' AND has({p:Array(String)}, live_person_id)",
                    p=people,
                )[0][0]
                == 4
            ),
            "the orders in ClickHouse",
        )

        # An evaluator decides the moves; one restarted at once decides them again before the projector applied
        # them (most likely): the same commands, kept once.
        first = _evaluator(settings, clickhouse_client)
        first.step()
        assert first.rule_moves == 3  # buyer and newcomer → customer, hot → opportunity
        first.close()
        restarted = _evaluator(settings, clickhouse_client)
        restarted.step()
        stack.wait(
            lambda: _stage(stack, buyer) == "customer" and _stage(stack, newcomer) == "customer" and _stage(stack, hot) == "opportunity",
            "the rule moves",
        )
        assert _history(stack, buyer) == [("", "lead", "api", ""), ("lead", "customer", "rule:customer", "")]
        assert _history(stack, newcomer) == [("", "customer", "rule:customer", "")]
        assert _history(stack, hot) == [("", "opportunity", "rule:opportunity", "")]
        # Forward only: the evangelist who ordered stays; the order from 40 days ago moves no one.
        assert _stage(stack, ahead) == "evangelist" and _history(stack, ahead) == [("", "evangelist", "api", "")]
        assert _stage(stack, old) == ""
        sent = _rule_commands(settings, buyer)
        assert len(sent) in (1, 2) and len({c.command_id for c in sent}) == 1 and sent[0].stage_from == "lead"
        assert stack.query(
            "SELECT count() FROM {db}.stage_history FINAL WHERE person_id = {p:String} AND by = 'rule:customer'", p=buyer
        ) == [(1,)]

        def changes() -> list[tuple]:
            return stack.query(
                "SELECT event, JSONExtractString(properties, 'source') FROM {db}.events FINAL WHERE type = 'profile_change' "
                "AND event = '$stage_changed' AND person_id = {p:String} ORDER BY timestamp",
                p=buyer,
            )

        stack.wait(lambda: len(changes()) == 2, "the buyer's two stage changes on the timeline")
        # Whether or not the restart above sent it again: a copy decided later (a later time) changes nothing, not
        # even when the customer stage was entered.
        entered = stack.api.get(f"/api/v1/users/{buyer}/stage-history", headers=stack.auth).json()["history"]
        copy = sent[0].model_copy(update={"at": datetime.now(UTC)})
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "partitioner": "murmur2_random"})  # as the API's
        producer.produce(settings.topics.user_commands.name, copy.model_dump_json().encode(), buyer)
        assert producer.flush(30) == 0
        _patch(stack, buyer, set={"marker": run})  # after the copy on the buyer's partition: once applied, so is the copy
        assert stack.api.get(f"/api/v1/users/{buyer}/stage-history", headers=stack.auth).json()["history"] == entered
        assert len(changes()) == 2

        # A manual move back holds: the rule moved this user once; a new order does not move them again.
        _patch(stack, buyer, stage="lead", stage_reason="order refunded")
        _order(stack, f"buyer-{run}")
        stack.wait(
            lambda: (
                stack.query(
                    "SELECT count() FROM {db}.events_resolved WHERE event = 'Order Completed' AND live_person_id = {p:String}", p=buyer
                )[0][0]
                == 2
            ),
            "the second order",
        )
        restarted.close()
        published = end_offsets(settings, [settings.topics.user_commands.name])
        again = _evaluator(settings, clickhouse_client)
        again.step()
        assert again.rule_moves == 0 and end_offsets(settings, [settings.topics.user_commands.name]) == published
        assert _stage(stack, buyer) == "lead" and _history(stack, buyer)[-1] == ("customer", "lead", "api", "order refunded")
        again.close()

        live = stack.projector
        stopped_at = end_offsets(settings, list(live.handlers))
        stack.wait(lambda: all(live.committed.get(p, 0) >= end for p, end in stopped_at.items()), "the projector to catch up")
    snapshot = {
        "history": "SELECT * EXCEPT (version) FROM {db}.stage_history FINAL ORDER BY person_id, command_id",
        "stages": "SELECT person_id, stage FROM {db}.persons FINAL ORDER BY person_id",
    }
    before = {name: clickhouse_client.query(sql.replace("{db}", settings.database)).result_rows for name, sql in snapshot.items()}
    assert sum(1 for row in before["history"] if row[5].startswith("rule:")) == 3

    report = replay(settings, connect(settings.clickhouse_dsn))

    after = {name: clickhouse_client.query(sql.replace("{db}", settings.database)).result_rows for name, sql in snapshot.items()}
    assert after == before
    # An evaluator started on the rebuilt tables finds nothing owed: the moves are in the command log.
    published = end_offsets(settings, [settings.topics.user_commands.name])
    rebuilt = _evaluator(settings, clickhouse_client)
    rebuilt.step()
    assert rebuilt.rule_moves == 0 and end_offsets(settings, [settings.topics.user_commands.name]) == published
    rebuilt.close()
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {report.previous}")
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")
