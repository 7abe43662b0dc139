"""The owners' side of partitioned profiles: person-changes → persons (projections/person_owners.py decides).

Each projector process runs one, in its own consumer group (`<prefix>-persons`), so the partitions of
`person-changes` are shared out among the projectors and each person has one writer. A step: consume a
batch, load its persons' latest rows, fold, write them (versions from the offsets), publish each changed
person's properties and the hand-overs and forwards to other owners, then commit. A crash before the
commit refolds the batch: the fold is idempotent, and a person already merged away re-sends its hand-over.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import ValidationError

from projections.directory import Directory
from projections.person_owners import VERSION_BASE, by_person, fold_owned, records_of
from projections.persons import PersonsProjection
from projections.profile_diff import Transition, sources_of
from projections.profiles import EMPTY
from schemas.bad_rows import poison_message
from schemas.config import FootfallSettings
from schemas.person_changes import PersonChange

log = logging.getLogger(__name__)
MAX_RECORD_BYTES = 512 * 1024  # well under Kafka's default message.max.bytes (1 MiB)


class Writer(Protocol):
    """What the projector lends its owner: ClickHouse writes retried until accepted, and its publishing."""

    producer: Producer

    def _retrying(self, work, what: str = "a query"): ...
    def write_persons(
        self, person_rows: list[list], token: Callable[[str], str], transitions: list[Transition], sources: dict[str, str]
    ) -> None: ...


class PersonFolder:
    def __init__(self, settings: FootfallSettings, persons: PersonsProjection, directory: Directory, writer: Writer):
        self.topic = settings.topics.person_changes.name
        self.dead_letter = settings.topics.dead_letter.name
        self.persons = persons
        self.directory = directory  # the projector's: the same deletes and statuses as its routing
        self.writer = writer
        self.committed: dict[int, int] = {}  # partition → next offset, once folded and written
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"{settings.topic_prefix}-persons",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.poll.interval.ms": 60_000,
                "session.timeout.ms": int(settings.consumer_session_timeout_seconds * 1000),
            }
        )

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic])

    def close(self) -> None:
        self.consumer.close()

    def publish(self, changes: list[PersonChange]) -> None:
        """Records for persons' owners, keyed by person id; acknowledged before the caller commits."""
        producer = self.writer.producer
        for change in changes:
            for value in records_of(change, MAX_RECORD_BYTES):
                producer.produce(self.topic, value, change.person_id.encode())
        if changes and producer.flush(30) > 0:
            raise RuntimeError("the person-changes topic did not acknowledge the projector's records")

    def step(self, max_records: int = 2000, timeout: float = 0.2) -> int:
        """Fold one batch of the owned partitions; returns how many records it folded."""
        records: list[PersonChange] = []
        versions: dict[str, int] = {}
        first: dict[int, int] = {}
        offsets: dict[int, int] = {}
        bad: list[bytes] = []
        for message in self.consumer.consume(max_records, timeout=timeout):
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("person-changes consumer: %s", message.error().str())
                continue
            first.setdefault(message.partition(), message.offset())
            offsets[message.partition()] = message.offset() + 1
            try:
                change = PersonChange.model_validate_json(message.value() or b"")
            except ValidationError as exc:
                where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                bad.append(poison_message("projector", message.value(), "message", f"unreadable on {self.topic}: {exc}"[:500], where))
                continue
            records.append(change)
            versions[change.person_id] = max(versions.get(change.person_id, 0), VERSION_BASE + message.offset())
        if records:
            self.fold(records, versions, hashlib.sha256(repr(sorted((p, first[p], o) for p, o in offsets.items())).encode()).hexdigest())
        for value in bad:
            self.writer.producer.produce(self.dead_letter, value)
        if bad and self.writer.producer.flush(30) > 0:
            raise RuntimeError("the dead-letter topic did not acknowledge the owner's bad rows")
        if offsets:
            self.commit(offsets)
        return len(records)

    def fold(self, records: list[PersonChange], versions: dict[str, int], token: str) -> None:
        changes = by_person(records)
        stored = self.writer._retrying(lambda: self.persons.load_owned(set(changes)), what="the persons to fold")
        folded = fold_owned(changes, stored, self.directory)
        person_rows = self.writer._retrying(lambda: self.persons.owned_rows(folded, versions), what="the persons' counts")
        transitions = [
            Transition(person_id, stored[person_id].state if person_id in stored else EMPTY, owned.state)
            for person_id, owned in folded.people.items()
            if owned.merged_into is None
        ]
        sources = sources_of((e for r in records for e in r.events), (c for r in records for c in r.commands))
        self.writer.write_persons(person_rows, lambda table: f"{table}|{token}", transitions, sources)
        self.publish(folded.forwards)  # after the rows: a refold of a merged-away person re-sends it

    def commit(self, offsets: dict[int, int]) -> None:
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()], asynchronous=False)
            self.committed.update(offsets)
        except KafkaException as exc:  # rebalanced meanwhile: the new owner refolds, idempotently
            log.warning("person-changes offset commit refused (%s); the new owner refolds the batch", exc)
