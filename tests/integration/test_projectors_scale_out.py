"""Projectors that scale out: two projectors in one consumer group, the second joining halfway (a rebalance),
with profiles folded by the owners of the person-changes partitions, give the tables one projector gives
over the same input — a person merge spanning their partitions and persons both of them touch included."""

from __future__ import annotations

import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from projections.projector import Projector
from projections.replay import end_offsets
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping, PersonIdentity, PersonMerge, person_id_for
from schemas.sessions import SessionUpdate
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
DEVICES = [f"device-{n}" for n in range(12)]


def person_changes_partition(person_id: str, partitions: int) -> int:
    """librdkafka's default partitioner for a keyed record: CRC32 of the key."""
    return zlib.crc32(person_id.encode()) % partitions


def merge_pair(partitions: int) -> tuple[str, str]:
    """Two devices whose persons are owned by different person-changes partitions."""
    first = DEVICES[0]
    other = next(
        d
        for d in DEVICES[1:]
        if person_changes_partition(person_id_for(d), partitions) != person_changes_partition(person_id_for(first), partitions)
    )
    return other, first  # the first is merged into the other


def history(partitions: int) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str, bytes]]]:
    """The input in two halves: (topic kind, key, value). The merge and the user id's events come late."""
    absorbed_device, survivor_device = merge_pair(partitions)
    survivor, absorbed = person_id_for(survivor_device), person_id_for(absorbed_device)
    first: list[tuple[str, str, bytes]] = []
    second: list[tuple[str, str, bytes]] = []
    for number, device in enumerate(DEVICES):
        person = person_id_for(device)
        mapping = DistinctIdMapping(distinct_id=device, person_id=person, version=1)
        identity = PersonIdentity(person_id=person, visitor_number=number + 1, identified=False, is_contact=False, version=1)
        first += [("identities", device, mapping.model_dump_json().encode()), ("persons", person, identity.model_dump_json().encode())]
        for n in range(30):
            # Each device writes its own keys: a merge lets the survivor's values win a conflict.
            event = EnrichedEvent(
                message_id=f"{device}-{n}",
                type="page" if n % 3 else "track",
                event="Viewed",
                anonymous_id=device,
                timestamp=START + timedelta(seconds=number * 100 + n),
                received_at=START + timedelta(seconds=number * 100 + n),
                source_id="test",
                session_id=f"s-{device}",
                person_id=person,
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                properties={"$set": {f"plan_{device}": f"v{n}"}, "$set_once": {f"first_{device}": n}},
                context={"page": {"url": f"https://shop.example/{n}", "referrer": f"https://ref{number}.example/"}},
            )
            # The absorbed device is quiet after the first half: its later events would meet the survivor
            # before or after the merge depending on batching (profiles.merge is no join), for one projector too.
            (first if n < 15 or device == absorbed_device else second).append(("enriched", device, event.model_dump_json().encode()))
        session = SessionUpdate(
            session_id=f"s-{device}",
            device_key=device,
            version=1,
            status="open",
            start=START,
            end=START,
            duration_seconds=0,
            event_count=1,
            pageview_count=1,
            bounced=True,
            distinct_id=device,
            person_id=person,
        )
        first.append(("sessions", device, session.model_dump_json().encode()))
        later = session.model_copy(update={"version": 2, "event_count": 30, "bounced": False, "duration_seconds": 600})
        second.append(("sessions", device, later.model_dump_json().encode()))
    # The absorbed device identifies as the survivor's user: its mapping moves, its person merges away.
    user = "user-42"
    second += [
        ("identities", user, DistinctIdMapping(distinct_id=user, person_id=survivor, version=2).model_dump_json().encode()),
        (
            "identities",
            absorbed_device,
            DistinctIdMapping(distinct_id=absorbed_device, person_id=survivor, version=3).model_dump_json().encode(),
        ),
        (
            "persons",
            absorbed,
            PersonMerge(from_person=absorbed, into_person=survivor, version=4, reason="identify", timestamp=START + timedelta(hours=1))
            .model_dump_json()
            .encode(),
        ),
        (
            "persons",
            absorbed,
            PersonIdentity(
                person_id=absorbed,
                visitor_number=DEVICES.index(absorbed_device) + 1,
                identified=False,
                is_contact=False,
                version=5,
                merged_into=survivor,
            )
            .model_dump_json()
            .encode(),
        ),
        (
            "persons",
            survivor,
            PersonIdentity(person_id=survivor, visitor_number=1, identified=True, is_contact=True, version=6).model_dump_json().encode(),
        ),
    ]
    for n in range(10):  # the user's own events: the survivor's, from another distinct id (another partition)
        event = EnrichedEvent(
            message_id=f"{user}-{n}",
            type="identify" if n == 0 else "track",
            event="Bought",
            anonymous_id=absorbed_device,
            user_id=user,
            traits={"email": "ada@example.com"} if n == 0 else {},
            timestamp=START + timedelta(hours=1, seconds=n),
            received_at=START + timedelta(hours=1, seconds=n),
            source_id="test",
            person_id=survivor,
        )
        second.append(("enriched", user, event.model_dump_json().encode()))
    return first, second


def produce(settings, records) -> None:
    topics = {
        "enriched": settings.topics.enriched.name,
        "identities": settings.topics.identities.name,
        "persons": settings.topics.persons.name,
        "sessions": settings.topics.sessions.name,
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for kind, key, value in records:
        producer.produce(topics[kind], value, key.encode())
    assert producer.flush(30) == 0


class Running:
    """Projectors in threads of this process (chdb: one engine per process, shared by their clients)."""

    def __init__(self) -> None:
        self.workers: list[tuple[Projector, threading.Thread]] = []
        self.failures: list[BaseException] = []

    def start(self, projector: Projector) -> Projector:
        def run() -> None:
            try:
                projector.run()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.workers.append((projector, thread))
        return projector

    def committed(self, attribute: str) -> dict:
        """What the group has committed, as these projectors saw it (the latest commit of each partition wins)."""
        seen: dict = {}
        for projector, _ in self.workers:
            source = projector.committed if attribute == "main" else projector.folder.committed
            for position, offset in source.items():
                seen[position] = max(seen.get(position, 0), offset)
        return seen

    def stop(self) -> None:
        for projector, _ in self.workers:
            projector.stop()
        for _, thread in self.workers:
            thread.join(60)
        assert not self.failures, self.failures
        assert not any(thread.is_alive() for _, thread in self.workers), "a projector did not stop"


def wait_for_main_topics(running: Running, ends: dict) -> None:
    wait_until(
        lambda: bool(running.failures) or all(running.committed("main").get(p, 0) >= end for p, end in ends.items()),
        120,
        what="the projectors to project every topic",
    )
    assert not running.failures, running.failures


def wait_for_owners(running: Running, settings) -> None:
    """Until the owners have folded the whole person-changes topic, hand-overs and forwards included."""
    topic = settings.topics.person_changes.name

    def done() -> bool:
        ends = end_offsets(settings, [topic])
        return bool(running.failures) or all(running.committed("owners").get(partition, 0) >= end for (_, partition), end in ends.items())

    wait_until(done, 120, what="the persons' owners to fold every change")
    wait_until(done, 120, what="the persons' owners to fold every change, after a second look")
    assert not running.failures, running.failures


TABLES = {
    "persons": "SELECT * EXCEPT (version) FROM {db}.persons FINAL ORDER BY person_id",
    "person_distinct_ids": "SELECT * FROM {db}.person_distinct_ids FINAL ORDER BY distinct_id",
    "person_overrides": "SELECT * FROM {db}.person_overrides FINAL ORDER BY from_person",
    # Tracked events: the `$` rows of profile changes are decided per batch (other boundaries may fold two changes
    # of one property into one: ARCHITECTURE.md, "The outbound stream"), and both runs publish onto one topic.
    "events": "SELECT * FROM {db}.events FINAL WHERE type != 'profile_change' ORDER BY message_id",
    "sessions": "SELECT * FROM {db}.sessions FINAL ORDER BY session_id",
}


def tables(client, database: str) -> dict[str, list[tuple]]:
    return {name: client.query(sql.format(db=database)).result_rows for name, sql in TABLES.items()}


def test_two_projectors_with_a_rebalance_give_one_projectors_tables(settings, clickhouse_client):
    settings = settings.model_copy(update={"batch_max_rows": 40})  # many batches: the rebalance falls mid-stream
    partitioned = settings.model_copy(update={"persons_partitioned": True})
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    first, second = history(settings.topics.person_changes.partitions)
    main_topics = [
        settings.topics.enriched.name,
        settings.topics.identities.name,
        settings.topics.persons.name,
        settings.topics.sessions.name,
    ]

    running = Running()
    try:
        produce(settings, first)
        one = running.start(Projector(partitioned, connect(settings.clickhouse_dsn)))
        wait_for_main_topics(running, end_offsets(settings, main_topics))
        half = len(second) // 2
        produce(settings, second[:half])
        two = running.start(Projector(partitioned, connect(settings.clickhouse_dsn)))  # joins: the group rebalances
        wait_until(lambda: two.assigned.is_set(), 60, what="the second projector to take partitions")
        produce(settings, second[half:])  # the merge and the user's events: projected by both
        wait_for_main_topics(running, end_offsets(settings, main_topics))
        wait_for_owners(running, settings)
    finally:
        running.stop()
    assert one.committed and two.committed  # both projected a share
    assert one.folder.committed and two.folder.committed  # and both folded persons

    reference_db = f"{settings.database}_one"
    migrate(clickhouse_client, reference_db)
    try:
        reference = Running()
        try:
            reference.start(
                Projector(
                    settings.model_copy(update={"database": reference_db}),
                    connect(settings.clickhouse_dsn),
                    group_id=f"{settings.topic_prefix}-reference-{uuid.uuid4().hex[:6]}",
                )
            )
            wait_for_main_topics(reference, end_offsets(settings, main_topics))
        finally:
            reference.stop()
        expected, got = tables(clickhouse_client, reference_db), tables(clickhouse_client, settings.database)
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {reference_db}")

    absorbed_device, survivor_device = merge_pair(settings.topics.person_changes.partitions)
    persons = {row[0]: row for row in expected["persons"]}
    assert len(expected["persons"]) == len(DEVICES) - 1  # the absorbed person's row is deleted
    assert person_id_for(absorbed_device) not in persons
    survivor = persons[person_id_for(survivor_device)]
    columns = [c[0] for c in clickhouse_client.query(f"DESCRIBE TABLE {settings.database}.persons").result_rows]
    columns.remove("version")
    assert survivor[columns.index("event_count")] == 30 + 30 + 10  # both devices' events and the user's
    assert survivor[columns.index("email")] == "ada@example.com"
    assert len(expected["events"]) == len(DEVICES) * 30 + 10
    for name in TABLES:
        assert got[name] == expected[name], name
