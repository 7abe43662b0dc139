"""The outbound stream and webhooks on real Kafka and ClickHouse: what the projector publishes on profile-changes
for API updates, tags, status, stage moves (forward by a rule, back by hand with its reason) and list
membership; the same change ids when the commands are projected again and nothing new on `footfall replay`; a
receiver on 127.0.0.1 that gets signed deliveries, retries after failures, a dead-lettered delivery after the
last try readable through the deliveries API, and a dead receiver that holds up no other webhook."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from footfall.topics import read_topic
from outbound.webhooks import Dispatcher
from projections.clickhouse import connect, migrate
from projections.projector import Projector
from projections.replay import end_offsets, replay
from schemas.profile_changes import ProfileChange
from schemas.webhooks import verify
from tests.api_support import api_stack, stack_settings
from tests.infra import free_port
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

CUSTOMER_RULE = {"kind": "group", "conditions": [{"kind": "property", "property": "orders_placed", "operator": "gt", "value": 0}]}
SECRET = "s3cret-for-the-test-receiver"


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST; a path answers 500 to its first `fail_first[path]` calls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: dict[str, list[tuple[dict[str, str], bytes]]] = defaultdict(list)
        self.fail_first: dict[str, int] = {}

        async def receive(request: Request) -> JSONResponse:
            name = request.path_params["name"]
            self.calls[name].append((dict(request.headers), await request.body()))
            if name.startswith("slow"):
                await asyncio.sleep(5)
            if len(self.calls[name]) <= self.fail_first.get(name, 0):
                return JSONResponse({"error": "not now"}, 500)
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/{name}", receive, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def changes(self, name: str) -> list[ProfileChange]:
        return [ProfileChange.model_validate_json(body) for _, body in self.calls[name]]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not receiver.server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield receiver
    finally:
        receiver.server.should_exit = True
        thread.join(10)


@contextmanager
def dispatching(settings) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(settings)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(dispatcher.run())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failure.append(exc)

    thread = threading.Thread(target=run, name="test-webhooks", daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        loop.call_soon_threadsafe(dispatcher.stop)
        thread.join(30)
    if failure:
        raise failure[0]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path_factory):
    base = tmp_path_factory.mktemp("outbound")
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, base / "data").model_copy(
        update={
            "webhook_max_attempts": 3,
            "webhook_backoff_seconds": 0.2,
            "webhook_backoff_max_seconds": 1.0,
            "webhook_timeout_seconds": 6.0,
            "webhook_max_poll_interval_seconds": 10.0,  # a slow receiver's batch outlasts it: the worker must stay in its group
        }
    )
    with api_stack(settings, clickhouse_client, base / "logs") as running, receiving() as receiver, dispatching(settings):
        running.receiver = receiver
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


def published(stack) -> list[tuple[bytes, ProfileChange]]:
    return [
        (r.key(), ProfileChange.model_validate_json(r.value()))
        for r in read_topic(stack.settings, stack.settings.topics.profile_changes.name)
    ]


def changes_of(stack, person_id: str, until=lambda changes: True) -> list[ProfileChange]:
    def found():
        mine = [change for key, change in published(stack) if change.person_id == person_id]
        assert all(key == person_id.encode() for key, change in published(stack) if change.person_id == person_id)
        return mine if mine and until(mine) else None

    return stack.wait(found, f"the changes of {person_id}")


def summary(changes: list[ProfileChange], kinds: tuple[str, ...]) -> list[tuple]:
    return [(c.kind, c.subject, c.before, c.after, c.source) for c in changes if c.kind in kinds]


def webhook(stack, **body) -> dict:
    made = stack.api.post("/api/v1/webhooks", json={"secret": SECRET, **body}, headers=stack.auth)
    assert made.status_code == 201, made.text
    return made.json()


def deliveries(stack, webhook_id: str, **params) -> list[dict]:
    answer = stack.api.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params=params, headers=stack.auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


# -- the outbound stream --------------------------------------------------------------------------------------


def test_an_api_update_a_tag_and_a_status_change_are_published(stack):
    user_id = unique("u")
    person = create(stack, user_id=user_id, properties={"plan": "free"})["person_id"]
    patch(stack, person, set={"plan": "pro"}, tags={"add": ["vip"]})
    patch(stack, person, status="disabled", tags={"remove": ["vip"]})
    changes = changes_of(stack, person, lambda found: any(c.kind == "status_changed" for c in found))
    assert summary(changes, ("property_changed",)) == [
        ("property_changed", "plan", None, "free", "api"),
        ("property_changed", "user_id", None, user_id, "api"),
        ("property_changed", "plan", "free", "pro", "api"),
    ]
    assert summary(changes, ("tag_added", "tag_removed", "status_changed")) == [
        ("tag_added", "vip", None, None, "api"),
        ("tag_removed", "vip", None, None, "api"),
        ("status_changed", "disabled", "active", "disabled", "api"),
    ]
    assert len({c.change_id for c in changes}) == len(changes)


def test_a_merged_persons_changes_show_on_the_survivors_timeline(stack):
    first, second = create(stack, user_id=unique("ma"), properties={"plan": "free"}), create(stack, user_id=unique("mb"))
    at = datetime.now(UTC).isoformat()
    stack.track("/v1/alias", {"previousId": first["user_id"], "userId": second["user_id"], "messageId": unique("alias"), "timestamp": at})
    ids = {"a": first["person_id"], "b": second["person_id"]}
    merge = "SELECT from_person, into_person FROM {db}.person_overrides FINAL WHERE from_person IN ({a:String}, {b:String})"
    [(merged, survivor)] = stack.wait(lambda: stack.query(merge, **ids), "the merge")
    assert {merged, survivor} == set(ids.values())

    def timeline_changes() -> set[tuple[str, str]] | None:
        events = stack.api.get(f"/api/v1/users/{survivor}/events?limit=200", headers=stack.auth).json()["events"]
        found = {(e["distinct_id"], e["properties"]["subject"]) for e in events if e["type"] == "profile_change"}
        return found if merged in {person for person, _ in found} else None

    changes = stack.wait(timeline_changes, "the merged person's changes on the survivor's timeline")
    assert (first["person_id"], "plan") in changes and (second["person_id"], "user_id") in changes


def test_stage_moves_forward_by_a_rule_and_back_by_hand_with_the_reason(stack):
    assert stack.api.patch("/api/v1/lifecycle-stages/customer", json={"rule": CUSTOMER_RULE}, headers=stack.auth).status_code == 200
    person = create(stack, user_id=unique("s"), stage="lead")["person_id"]
    patch(stack, person, set={"orders_placed": 1})
    stack.wait(lambda: stack.api.get(f"/api/v1/users/{person}", headers=stack.auth).json()["stage"] == "customer", "the rule's move")
    patch(stack, person, stage="lead", stage_reason="order refunded")
    changes = changes_of(stack, person, lambda found: sum(c.kind == "stage_changed" for c in found) == 3)
    moves = [c for c in changes if c.kind == "stage_changed"]
    assert [(c.before, c.after, c.source, c.detail) for c in moves] == [
        (None, "lead", "api", {"reason": "", "direction": "forward"}),
        ("lead", "customer", "rule:customer", {"reason": "", "direction": "forward"}),
        ("customer", "lead", "api", {"reason": "order refunded", "direction": "backward"}),
    ]


def test_list_adds_and_removes_are_published(stack):
    list_id = stack.api.post("/api/v1/lists", json={"name": "Outbound"}, headers=stack.auth).json()["id"]
    person = create(stack, user_id=unique("l"))["person_id"]
    patch(stack, person, lists={"add": [list_id], "by": "ann@example.com"})
    patch(stack, person, lists={"remove": [list_id]})
    changes = changes_of(stack, person, lambda found: any(c.kind == "list_removed" for c in found))
    assert summary(changes, ("list_added", "list_removed")) == [
        ("list_added", list_id, None, None, "ann@example.com"),
        ("list_removed", list_id, None, None, "api"),
    ]


def test_projecting_the_commands_again_publishes_no_new_change_id_and_a_replay_publishes_nothing(stack, clickhouse_client):
    """A projector that folds every command again from nothing (a redelivery of the whole log, with other batch
    boundaries) sends only change ids that were sent before; `footfall replay` sends none."""
    person = create(stack, user_id=unique("r"), stage="subscriber", tags=["a"])["person_id"]
    patch(stack, person, set={"plan": "team"}, tags={"add": ["b"]})
    patch(stack, person, stage="opportunity")
    changes_of(stack, person, lambda found: sum(c.kind == "stage_changed" for c in found) == 2)
    live = stack.projector
    stopped_at = end_offsets(stack.settings, list(live.handlers))
    stack.wait(lambda: all(live.committed.get(p, 0) >= end for p, end in stopped_at.items()), "the projector to catch up")
    before = published(stack)
    ids = {c.change_id for _, c in before}

    again = stack.settings.model_copy(update={"database": f"{stack.settings.database}_again"})
    migrate(clickhouse_client, again.database)  # its own database, so it decides every change again
    redo = Projector(again, connect(again.clickhouse_dsn), group_id=f"{again.topic_prefix}-redo-{uuid.uuid4().hex[:6]}")
    thread = threading.Thread(target=redo.run, daemon=True)
    thread.start()
    try:
        ends = end_offsets(again, list(redo.handlers))
        stack.wait(lambda: all(redo.committed.get(p, 0) >= end for p, end in ends.items()), "the second projector to catch up", 120)
    finally:
        redo.stop()
        thread.join(30)
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {again.database}")
    after = published(stack)
    assert len(after) > len(before)  # it did publish again ...
    assert {c.change_id for _, c in after} == ids  # ... only ids already there

    report = replay(stack.settings, connect(stack.settings.clickhouse_dsn), switch=False)
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {report.database}")
    assert len(published(stack)) == len(after)


# -- webhooks ---------------------------------------------------------------------------------------------------


def test_webhook_definitions_through_the_api(stack):
    made = webhook(stack, url=stack.receiver.url("api"), kinds=["tag_added"], description="tags")
    assert made["secret"] == SECRET and made["secret_hint"] == "…" + SECRET[-4:]
    shown = stack.api.get(f"/api/v1/webhooks/{made['id']}", headers=stack.auth).json()
    assert "secret" not in shown and shown["kinds"] == ["tag_added"] and shown["enabled"] is True
    assert made["id"] in {w["id"] for w in stack.api.get("/api/v1/webhooks", headers=stack.auth).json()["webhooks"]}
    generated = webhook(stack, url="https://example.com/hook", secret=None)
    assert len(generated["secret"]) == 64

    for body, field in (
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com", "kinds": ["nope"]}, "kinds"),
        ({"url": "https://example.com", "secret": "short"}, "secret"),
        ({}, "url"),
    ):
        refused = stack.api.post("/api/v1/webhooks", json=body, headers=stack.auth)
        assert refused.status_code == 422, (body, refused.text)
        assert field in refused.json()["errors"][0]["field"], refused.json()
    updated = stack.api.patch(f"/api/v1/webhooks/{made['id']}", json={"enabled": False}, headers=stack.auth)
    assert updated.status_code == 200 and updated.json()["enabled"] is False and "secret" not in updated.json()
    assert stack.api.post("/api/v1/webhooks", json={"id": made["id"], "url": "https://example.com"}, headers=stack.auth).status_code == 409
    assert stack.api.delete(f"/api/v1/webhooks/{made['id']}", headers=stack.auth).status_code == 200
    assert stack.api.get(f"/api/v1/webhooks/{made['id']}", headers=stack.auth).status_code == 404
    reused = stack.api.post("/api/v1/webhooks", json={"id": made["id"], "url": "https://example.com"}, headers=stack.auth)
    assert reused.status_code == 409 and "not reused" in reused.json()["errors"][0]["message"]
    assert stack.api.get("/api/v1/webhooks/nope/deliveries", headers=stack.auth).status_code == 404
    assert stack.api.get("/api/v1/webhooks", headers={"Authorization": "Bearer wrong"}).status_code == 403
    stack.api.delete(f"/api/v1/webhooks/{generated['id']}", headers=stack.auth)


def test_a_receiver_gets_signed_deliveries_of_the_changes_it_subscribed_to(stack):
    tags = webhook(stack, url=stack.receiver.url("tags"), kinds=["tag_added"])
    stages = webhook(stack, url=stack.receiver.url("stages"), stages=["opportunity"])
    time.sleep(6)  # the dispatcher follows the definitions and joins each webhook's group
    person = create(stack, user_id=unique("w"), stage="lead")["person_id"]
    patch(stack, person, tags={"add": ["signed"]}, set={"ignored": 1})
    patch(stack, person, stage="opportunity")
    stack.wait(lambda: stack.receiver.calls["tags"] and stack.receiver.calls["stages"], "the deliveries")
    (headers, body), *rest = [(h, b) for h, b in stack.receiver.calls["tags"] if person.encode() in b]
    assert rest == []
    assert verify(SECRET, body, headers["x-footfall-signature"])
    assert not verify("another-secret-entirely", body, headers["x-footfall-signature"])
    change = ProfileChange.model_validate_json(body)
    assert (change.kind, change.subject, change.person_id) == ("tag_added", "signed", person)
    assert headers["idempotency-key"] == headers["x-footfall-change-id"] == change.change_id
    assert headers["x-footfall-webhook"] == tags["id"] and headers["x-footfall-attempt"] == "1"
    assert abs(int(headers["x-footfall-timestamp"]) - time.time()) < 120
    moves = [c for c in stack.receiver.changes("stages") if c.person_id == person]
    assert [(c.before, c.after) for c in moves] == [("lead", "opportunity")]  # only the stage it subscribed to
    shown = stack.wait(lambda: deliveries(stack, tags["id"], change_id=change.change_id), "the delivery record")
    assert [(d["attempt"], d["status"], d["http_status"]) for d in shown] == [(1, "delivered", 200)]
    for made in (tags, stages):
        stack.api.delete(f"/api/v1/webhooks/{made['id']}", headers=stack.auth)


def test_failed_deliveries_are_retried_then_dead_lettered_and_a_dead_receiver_holds_up_no_one(stack):
    stack.receiver.fail_first["flaky"] = 2
    stack.receiver.fail_first["down"] = 1_000
    flaky = webhook(stack, url=stack.receiver.url("flaky"), kinds=["tag_added"])
    down = webhook(stack, url=stack.receiver.url("down"), kinds=["tag_added"])
    closed = webhook(stack, url=f"http://127.0.0.1:{free_port()}/nobody", kinds=["tag_added"])
    healthy = webhook(stack, url=stack.receiver.url("healthy"), kinds=["tag_added"])
    time.sleep(6)
    person = create(stack, user_id=unique("f"))["person_id"]
    patch(stack, person, tags={"add": ["retry-me"]})

    stack.wait(lambda: [c for c in stack.receiver.changes("healthy") if c.person_id == person], "the healthy receiver's delivery")
    flaky_calls = stack.wait(lambda: len(stack.receiver.calls["flaky"]) >= 3 and stack.receiver.calls["flaky"], "the flaky retries")
    assert [h["x-footfall-attempt"] for h, _ in flaky_calls] == ["1", "2", "3"]
    assert len({h["idempotency-key"] for h, _ in flaky_calls}) == 1  # the same change on every try
    attempts = stack.wait(lambda: len(d := deliveries(stack, flaky["id"])) == 3 and d, "the flaky attempts' records")
    assert [(d["attempt"], d["status"], d["http_status"]) for d in reversed(attempts)] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]
    for dead in (down, closed):
        found = stack.wait(lambda dead=dead: deliveries(stack, dead["id"], status="dead_lettered"), "the dead letter")
        assert [(d["attempt"], d["change"]["person_id"], d["change"]["kind"]) for d in found] == [(3, person, "tag_added")]
    everything = deliveries(stack, closed["id"])
    assert [d["status"] for d in reversed(everything)] == ["failed", "failed", "dead_lettered"]
    assert everything[0]["http_status"] == 0 and "Connect" in everything[0]["error"]
    assert len(stack.receiver.calls["down"]) == 3
    for made in (flaky, down, closed, healthy):
        stack.api.delete(f"/api/v1/webhooks/{made['id']}", headers=stack.auth)


def test_a_batch_that_outlasts_the_poll_interval_is_delivered_once(stack):
    """A receiver taking 5 s per change, three changes of one person in order: 15 s, past the group's 10 s poll
    interval. The worker keeps polling its paused partitions, so it stays in the group, commits, and nothing is
    delivered twice."""
    slow = webhook(stack, url=stack.receiver.url("slow"), kinds=["tag_added"])
    time.sleep(6)
    person = create(stack, user_id=unique("slow"))["person_id"]
    patch(stack, person, tags={"add": ["one", "two", "three"]})  # three changes in one batch
    stack.wait(lambda: len(deliveries(stack, slow["id"])) >= 3, "the slow deliveries", 120)
    time.sleep(10)  # a worker dropped from its group would be given the batch again by now
    tags = [c.subject for c in stack.receiver.changes("slow") if c.person_id == person]
    assert tags == ["one", "three", "two"], [
        (d["attempt"], d["status"], d["error"], d["duration_ms"]) for d in deliveries(stack, slow["id"])
    ]
    assert [d["status"] for d in deliveries(stack, slow["id"])] == ["delivered"] * 3
    stack.api.delete(f"/api/v1/webhooks/{slow['id']}", headers=stack.auth)


def test_partitioned_profiles_publish_from_the_persons_owners(settings, clickhouse_client):
    """With FOOTFALL_PERSONS_PARTITIONED the owner of the person's person-changes partition decides and publishes
    (commands sent straight to user-commands: no API needed), with the ids the single projector gives."""
    from confluent_kafka import Producer

    from footfall.topics import ensure_topics
    from projections.profile_diff import Transition, changes_of, sources_of
    from projections.profiles import EMPTY, apply_command
    from schemas.stages import DEFAULT_STAGES, rank_of
    from schemas.user_commands import UserCommand

    partitioned = settings.model_copy(update={"persons_partitioned": True})
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    person = f"p-{uuid.uuid4().hex[:8]}"
    commands = [
        UserCommand(kind="create", command_id="c1", person_id=person, at=at, set={"plan": "free"}, tags_add=["vip"], stage="customer", stage_by="api", by="api"),
        UserCommand(
            kind="update", command_id="c2", person_id=person, at=at + timedelta(seconds=1), stage="lead", stage_by="import",
            stage_reason="refund", lists_add=["beta"], lists_by="import", set={"plan": "pro"}, by="import",
        ),
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for command in commands:
        producer.produce(settings.topics.user_commands.name, command.model_dump_json().encode(), person)
        producer.flush(10)
    running = Projector(partitioned, connect(settings.clickhouse_dsn))
    assert running.folder is not None
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:

        def found():
            records = read_topic(settings, settings.topics.profile_changes.name)
            changes = [ProfileChange.model_validate_json(r.value()) for r in records]
            return changes if sum(c.kind == "stage_changed" for c in changes) >= 2 else None

        changes = wait_until(found, 120, what="the owner's changes")
    finally:
        running.stop()
        thread.join(30)
    assert {(c.kind, c.subject, c.source) for c in changes} >= {
        ("property_changed", "plan", "import"),  # both commands in one batch: one change, free never seen
        ("tag_added", "vip", "api"),
        ("stage_changed", "customer", "api"),
        ("stage_changed", "lead", "import"),
        ("list_added", "beta", "import"),
    }
    back = next(c for c in changes if c.kind == "stage_changed" and c.after == "lead")
    assert back.detail == {"reason": "refund", "direction": "backward"}
    # Every id is one the single projector gives when it sees the two commands one batch at a time.
    rank = rank_of(sorted(DEFAULT_STAGES.values(), key=lambda s: s.order))
    first = apply_command(EMPTY, commands[0])
    expected = changes_of([Transition(person, EMPTY, first)], sources_of([], commands), rank)
    expected += changes_of([Transition(person, first, apply_command(first, commands[1]))], sources_of([], commands), rank)
    assert {c.change_id for c in changes} <= {c.change_id for c in expected}
