"""Sessions and identities through the real topology: Kafka 4 broker, faust worker, projector, ClickHouse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka.partitioner import murmur2

from tests.integration.test_collector_support import bad_rows
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def partition(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def ids_on_distinct_partitions(prefix: str, count: int, partitions: int) -> list[str]:
    """Ids whose events and identity mappings live on different partitions (the co-partitioning problem)."""
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < count:
        candidate = f"{prefix}-{n}"
        chosen.setdefault(partition(candidate, partitions), candidate)
        n += 1
    return list(chosen.values())


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def send_batch(url: str, calls: list[dict]) -> None:
    response = httpx.post(f"{url}/v1/batch", json={"batch": calls}, auth=(WRITE_KEY, ""), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == []


def query(client, sql: str) -> list[tuple]:
    return client.query(sql).result_rows


def test_merged_ids_on_different_partitions_resolve_to_one_person(settings, clickhouse_client, tmp_path):
    db = settings.database
    laptop, phone, user = ids_on_distinct_partitions("dev", 3, settings.partitions)
    other_user = f"other-{uuid.uuid4().hex[:6]}"
    calls = [
        {"type": "page", "anonymousId": laptop, "name": "Home", "timestamp": at(0), "messageId": "p1"},
        {
            "type": "identify",
            "anonymousId": laptop,
            "userId": user,
            "traits": {"email": "u@example.com"},
            "timestamp": at(1),
            "messageId": "i1",
        },
        {"type": "page", "anonymousId": phone, "name": "Home", "timestamp": at(2), "messageId": "p2"},
        {"type": "identify", "anonymousId": phone, "userId": user, "timestamp": at(3), "messageId": "i2"},
        {"type": "track", "userId": user, "event": "Bought", "timestamp": at(4), "messageId": "t1"},
        # another user logs in on the laptop: the guard keeps the two accounts apart
        {"type": "identify", "anonymousId": laptop, "userId": other_user, "timestamp": at(5), "messageId": "i3"},
        {"type": "anonymous", "anonymousId": "x"},  # rejected individually, kept on the dead-letter topic
        # a placeholder user id: the event is kept, but the resolver refuses to link it (a warning bad row)
        {"type": "identify", "anonymousId": phone, "userId": "undefined", "timestamp": at(6), "messageId": "i4"},
    ]
    with collector(settings, tmp_path / "logs") as url, processor(settings, tmp_path / "logs") as worker, projector(settings) as projection:
        response = httpx.post(f"{url}/v1/batch", json={"batch": calls}, auth=(WRITE_KEY, ""), timeout=30)
        assert response.status_code == 200 and [r["index"] for r in response.json()["rejected"]] == [6]

        def identity_warnings():
            rows = [m.value for m in bad_rows(settings) if m.value["stage"] == "processor"]
            return [p for row in rows for p in row["problems"] if p["field"] == "user_id" and "placeholder" in p["reason"]]

        def people():
            return dict(query(clickhouse_client, f"SELECT distinct_id, person_id FROM {db}.person_distinct_ids FINAL"))

        mapping = wait_until(lambda: len(people()) == 4 and people(), 90, what="4 distinct ids mapped", watch=(worker, projection))
        wait_until(
            lambda: query(clickhouse_client, f"SELECT count() FROM {db}.events FINAL WHERE type != 'profile_change'")[0][0] == 7,
            60,
            what="7 events",
            watch=(worker, projection),
        )
        warnings = wait_until(identity_warnings, 30, what="the placeholder id's warning on the dead-letter topic", watch=(worker,))

        def profiles():
            return {
                row[0]: row[1:]
                for row in query(
                    clickhouse_client,
                    f"SELECT person_id, is_identified, is_contact, email, event_count, session_count, visitor_alias "
                    f"FROM {db}.persons FINAL",
                )
            }

        expected_user = (True, True, "u@example.com", 6)  # i4 stays with the phone: "undefined" is no user id
        found = wait_until(
            lambda: (p := profiles()) and p.get(mapping[user], ())[:4] == expected_user and len(p) == 2 and p,
            60,
            what="two profiles: the merged user and the other user",
            watch=(worker, projection),
        )

    assert mapping[laptop] == mapping[phone] == mapping[user]
    assert mapping[other_user] != mapping[user]
    assert "undefined" not in mapping and "'undefined'" in warnings[0]["reason"]
    live = dict(query(clickhouse_client, f"SELECT message_id, live_person_id FROM {db}.events_resolved"))
    assert {live[m] for m in ("p1", "i1", "p2", "i2", "t1")} == {mapping[user]}
    overrides = query(clickhouse_client, f"SELECT from_person, into_person FROM {db}.person_overrides FINAL")
    assert all(into == mapping[user] for _, into in overrides) and overrides
    user_profile, other_profile = found[mapping[user]], found[mapping[other_user]]
    assert user_profile[4] == 3  # sessions: the laptop's, the phone's and the user id's own device key
    assert user_profile[5].startswith("Visitor ") and other_profile[5].startswith("Visitor ")
    assert other_profile[0] is True and other_profile[3] == 1  # only the identify sent as the other user


def test_a_late_event_bridging_two_sessions_merges_them(settings, clickhouse_client, tmp_path):
    db = settings.database
    device = f"device-{uuid.uuid4().hex[:6]}"
    first_visit = [
        {
            "type": "page",
            "anonymousId": device,
            "timestamp": at(0),
            "messageId": "a1",
            "properties": {"url": "https://shop.example/?utm_source=news&utm_medium=email"},
        },
        {"type": "track", "anonymousId": device, "event": "Viewed", "timestamp": at(10), "messageId": "a2"},
        {"type": "page", "anonymousId": device, "timestamp": at(50), "messageId": "b1"},  # 40 min later: a new session
    ]
    with collector(settings, tmp_path / "logs") as url, processor(settings, tmp_path / "logs") as worker, projector(settings) as projection:
        send_batch(url, first_visit)

        def live_sessions():
            return query(
                clickhouse_client, f"SELECT session_id, event_count, utm_source FROM {db}.sessions FINAL WHERE device_key = '{device}'"
            )

        wait_until(lambda: len(live_sessions()) == 2, 90, what="two sessions", watch=(worker, projection))
        send_batch(url, [{"type": "track", "anonymousId": device, "event": "Came back", "timestamp": at(30), "messageId": "late"}])
        sessions = wait_until(
            lambda: (s := live_sessions()) and len(s) == 1 and s[0][1] == 4 and s, 60, what="one merged session", watch=(worker, projection)
        )

    [(survivor, count, utm_source)] = sessions
    assert (count, utm_source) == (4, "news")
    assert query(clickhouse_client, f"SELECT survivor_session_id FROM {db}.session_overrides FINAL") == [(survivor,)]
    live = query(clickhouse_client, f"SELECT DISTINCT live_session_id FROM {db}.events_resolved WHERE anonymous_id = '{device}'")
    assert live == [(survivor,)]


def test_idle_sessions_are_closed_by_the_timer(settings, clickhouse_client, tmp_path):
    settings = settings.model_copy(update={"session_gap_seconds": 2, "allowed_lateness_seconds": 1, "session_tick_seconds": 0.5})
    device = f"idle-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    calls = [
        {"type": "page", "anonymousId": device, "timestamp": (now - timedelta(seconds=1)).isoformat(), "messageId": "only"},
    ]
    with collector(settings, tmp_path / "logs") as url, processor(settings, tmp_path / "logs") as worker, projector(settings) as projection:
        send_batch(url, calls)
        status = wait_until(
            lambda: query(
                clickhouse_client, f"SELECT status, bounced FROM {settings.database}.sessions FINAL WHERE device_key = '{device}'"
            ),
            90,
            what="session row",
            watch=(worker, projection),
        )
        assert status[0][1] is True
        wait_until(
            lambda: (
                query(clickhouse_client, f"SELECT status FROM {settings.database}.sessions FINAL WHERE device_key = '{device}'")
                == [("ended",)]
            ),
            60,
            what="the session to end without further events",
            watch=(worker, projection),
        )
