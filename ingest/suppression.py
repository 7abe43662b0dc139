"""Erased identifiers: tracking calls that name one are dropped here, before the raw topic, and recorded.

The management API's erase writes the SHA-256 digest of each of the user's identifiers to the compacted
`erasures` topic. Every collector worker follows that topic from its beginning in a background thread and
keeps the digests in memory (an erasure is one small record per identifier). A call whose anonymousId,
userId or email trait is erased is not written to `raw`; a bad row without its payload (the payload is
exactly what must not be kept) records that it was dropped, and the SDK is answered as usual.

Between the erase and the moment a worker has read it, a call can still get through: the projector drops
such events too (projections/directory.py), so nothing of an erased user is projected either way.
"""

from __future__ import annotations

import logging
import threading

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from schemas.user_commands import Erasure, email_key, id_digest

log = logging.getLogger(__name__)


class Suppressions:
    def __init__(self, bootstrap_servers: str, topic: str):
        self.topic = topic
        self.digests: set[str] = set()
        self._stopping = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "footfall-collector-erasures",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        self._thread = threading.Thread(target=self._follow, name="erasures", daemon=True)

    def start(self) -> Suppressions:
        self._consumer.assign([TopicPartition(self.topic, 0, 0)])  # one partition (schemas/topics.py), from the start
        self._thread.start()
        return self

    def _follow(self) -> None:
        while not self._stopping.is_set():
            message = self._consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("erasures: %s", message.error().str())
                continue
            try:
                self.digests.add(Erasure.model_validate_json(message.value()).id_digest)
            except ValidationError:
                log.warning("erasures: an unreadable record at offset %s", message.offset())

    def erased_field(self, value: bytes) -> str | None:
        """The field of an accepted call (its raw-topic value) that names an erased identifier, if any."""
        if not self.digests:
            return None
        record = orjson.loads(value)
        email = (record.get("traits") or {}).get("email")
        candidates = (
            ("anonymousId", record.get("anonymous_id")),
            ("userId", record.get("user_id")),
            ("traits.email", email_key(email) if isinstance(email, str) else None),
        )
        for field, identifier in candidates:
            if isinstance(identifier, str) and identifier and id_digest(identifier) in self.digests:
                return field
        return None

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self._consumer.close()
