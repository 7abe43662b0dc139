"""Every kind of bad row, produced by a real refusal (the collector's app, a processor worker, the projector, a
real broker and ClickHouse), lands in `bad_rows` with its kind and rule."""

from __future__ import annotations

import gzip

import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from schemas.bad_rows import BAD_ROW_KINDS
from tests.infra import wait_for_leaders
from tests.integration.test_collector_support import NO_TESTCLIENT_WARNING, running_collector
from tests.pipeline import processor, projector, wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]

KEY, LIMITED_KEY, SHOP_KEY = "wk-bad", "wk-limited", "wk-shop"
SOURCES = [
    {"id": "bad", "write_key": KEY},
    {"id": "limited", "write_key": LIMITED_KEY, "rate_limit": {"events_per_second": 0.001, "burst": 1}},
    {"id": "shop", "write_key": SHOP_KEY, "allowed_origins": ["https://shop.example"]},
]
# Their producers are tested with them: property definitions and erasure (the management API) and the
# processors' enveloped records. schemas/bad_rows.py has their constructors; their tests come with them.
PRODUCED_ELSEWHERE = {"property_violation", "partition_mismatch", "erased_identifier"}

# kind → (stage, rule, message id) of the refusal made below
EXPECTED = {
    "invalid_json": ("collector", "invalid_json", ""),
    "unreadable_body": ("collector", "invalid_gzip", ""),
    "schema_violation": ("collector", "required", "bad-schema"),
    "size_violation": ("collector", "string_over_limit", "bad-size"),
    "auth": ("collector", "origin_not_allowed", "bad-origin"),
    "rate_limited_dropped": ("collector", "rate_limit", "bad-limited-2"),
    "placeholder_id": ("collector", "placeholder_id", "bad-placeholder"),
    "merge_refused": ("processor", "merge_refused", "bad-second-user"),
    "poison_message": ("processor", "unreadable_message", ""),
}


def test_the_kinds_tested_here_and_elsewhere_are_the_closed_list():
    assert set(EXPECTED) | PRODUCED_ELSEWHERE == set(BAD_ROW_KINDS)
    assert not set(EXPECTED) & PRODUCED_ELSEWHERE


def refuse_one_of_each(client) -> None:
    auth = {"X-Write-Key": KEY}
    answers = [
        client.post("/v1/batch", content=b'{"batch": [', headers={**auth, "Content-Type": "application/json"}),
        client.post("/v1/batch", content=b"not gzip", headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}),
        client.post("/v1/track", json={"anonymousId": "a-1", "messageId": "bad-schema"}, headers=auth),
        client.post(
            "/v1/track",
            json={"anonymousId": "a-1", "event": "E", "messageId": "bad-size", "properties": {"note": "x" * 9000}},
            headers=auth,
        ),
        client.post(
            "/v1/track",
            json={"anonymousId": "a-1", "event": "E", "messageId": "bad-origin"},
            headers={"X-Write-Key": SHOP_KEY, "Origin": "https://evil.example"},
        ),
        client.get(f"/v1/pixel/track?writeKey={LIMITED_KEY}&event=Open&userId=u-1&messageId=bad-limited-1"),
        client.get(f"/v1/pixel/track?writeKey={LIMITED_KEY}&event=Open&userId=u-1&messageId=bad-limited-2"),
        client.post("/v1/track", json={"anonymousId": "undefined", "event": "E", "messageId": "bad-placeholder"}, headers=auth),
        # Two users on one device: the second identify would fuse two accounts; the resolver refuses it.
        client.post(
            "/v1/identify", json={"anonymousId": "shared-device", "userId": "first-user", "messageId": "bad-first-user"}, headers=auth
        ),
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 403, 200, 429, 400, 200]


def test_every_refusal_lands_in_bad_rows_with_its_kind_and_rule(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    wait_for_leaders(settings.kafka_bootstrap_servers)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.topics.raw.name, b"{not json", b"poison-key")  # the processor's poison
    producer.produce(settings.topics.enriched.name, b"{not json", b"poison-key")  # the projector's
    producer.produce(settings.topics.dead_letter.name, gzip.compress(b"not a bad row"), b"x")  # not even a bad row
    assert producer.flush(60) == 0  # new topics' leaders can take a while on a busy machine

    def table() -> list[tuple]:
        return clickhouse_client.query(
            f"SELECT kind, stage, rule, message_id, field, source_id, payload_truncated FROM {settings.database}.bad_rows FINAL"
        ).result_rows

    with (
        running_collector(settings, tmp_path, SOURCES) as client,
        processor(settings, tmp_path / "logs") as worker,
        projector(settings) as live,
    ):
        refuse_one_of_each(client)
        # After the first identify is resolved, so the second one meets a person with a user id.
        wait_until(
            lambda: clickhouse_client.query(
                f"SELECT count() FROM {settings.database}.person_distinct_ids FINAL WHERE distinct_id = 'first-user'"
            ).result_rows[0][0],
            90,
            what="the first user's mapping",
            watch=(worker, live),
        )
        second = client.post(
            "/v1/identify",
            json={"anonymousId": "shared-device", "userId": "second-user", "messageId": "bad-second-user"},
            headers={"X-Write-Key": KEY},
        )
        assert second.status_code == 200

        def all_kinds() -> list[tuple] | None:
            rows = table()
            return rows if set(EXPECTED) <= {row[0] for row in rows} and sum(row[1] == "projector" for row in rows) >= 2 else None

        rows = wait_until(all_kinds, 90, what="a bad row of every kind in ClickHouse", watch=(worker, live))

    for kind, (stage, rule, message_id) in EXPECTED.items():
        found = [row for row in rows if row[0] == kind and row[1] == stage and row[2] == rule and row[3] == message_id]
        assert found, f"no {kind} row from the {stage} with rule {rule} for {message_id!r}: {[r for r in rows if r[0] == kind]}"
    # The collector's rows name their source; the dead-letter record that is no bad row is recorded as it is.
    assert {row[5] for row in rows if row[0] in ("auth",)} == {"shop"}
    assert {row[5] for row in rows if row[0] == "rate_limited_dropped"} == {"limited"}
    projector_rows = [row for row in rows if row[1] == "projector"]
    assert {(row[0], row[2]) for row in projector_rows} == {("poison_message", "unreadable_message")}
    assert len(projector_rows) == 2  # the enriched poison, and the dead-letter record that is no bad row
