"""The segment evaluator (`footfall segments`, one per deployment): decides segment membership in ClickHouse and
publishes every enter and exit on `profile-changes`; the projector turns them into `segment_members` rows and
`$segment_entered` / `$segment_exited` events.

    segments (compacted) ─► evaluator ─► SELECT person_id FROM persons FINAL WHERE <compiled condition>
                                  │
             profile-changes ◄────┘ segment_entered / segment_exited (key: person id)
             person-segments ◄──── the segments each touched person is in now (key: person id; configs' targeting)
             segment-status  ◄──── last evaluated, duration, members, last error (key: segment id)

When: every segment every `segments_interval_seconds` (default 60 s), a new or changed definition at once, and
segments on profile properties only (no behaviour, no time window) whenever the persons table changed (its
highest row version, checked every `segments_poll_seconds`, default 2 s).

Exactly once per transition: what the evaluator has published is its state. At start it reads its own
segment changes back from `profile-changes` (to the end offsets), so after a crash it knows every transition
it got acknowledged and decides only the rest; a transition decided again (it was not acknowledged) carries
the same change id (segment, person, entry number, kind). The person-segments records follow from that state
(schemas/person_segments.py): after each acknowledged batch of changes for the persons it touched, and at start
for whatever the topic and the state disagree on (a crash between the two). It writes nothing to ClickHouse: the projector is the
only writer, and a `footfall replay` rebuilds segment_members and the `$` rows from the topic alone.

It reads ClickHouse through `query` (handed in by the CLI: a server directly, or the projector's read API when
the projector owns the embedded engine).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from projections import metrics
from projections.projector import read_to_end
from schemas.compacted import CompactedFollower
from schemas.config import FootfallSettings
from schemas.person_segments import PersonSegments, Record, reconcile, records_for
from schemas.profile_changes import ProfileChange
from schemas.segments import (
    MemberState,
    SegmentDefinition,
    SegmentStatus,
    apply_change,
    compile_segment,
    is_property_only,
    live_segments,
    members_of,
    transitions,
)

log = logging.getLogger(__name__)
Query = Callable[[str, dict[str, Any]], list[list[Any]]]  # SQL with {db} and its parameters → rows


def _segment_change(value: bytes) -> ProfileChange:
    change = ProfileChange.model_validate_json(value)
    if change.kind not in ("segment_entered", "segment_exited"):
        raise ValueError("not a segment change")  # skipped by read_to_end
    return change


class SegmentEvaluator:
    def __init__(self, settings: FootfallSettings, query: Query):
        self.settings = settings
        self.query = query
        topics = settings.topics
        self.definitions = CompactedFollower(settings.kafka_bootstrap_servers, topics.segments.name, SegmentDefinition.model_validate_json)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True})
        self.state: dict[tuple[str, str], MemberState] = {}
        self.evaluated: dict[str, tuple[int, float]] = {}  # segment id → (definition version, monotonic time) of its last run
        self.persons_version: int | None = None
        self.stopping = threading.Event()
        self.evaluations = 0
        self._statuses: dict[str, SegmentStatus] = {}  # the last successful evaluation of each segment
        self._reload = True
        self._caught_up = False
        self._last_step = "not run yet"

    def load_published(self) -> None:
        """The membership every segment change published so far says (the evaluator's whole state)."""
        state: dict[tuple[str, str], MemberState] = {}
        group = f"{self.settings.topic_prefix}-segments-state"
        for change in read_to_end(self.settings, self.settings.topics.profile_changes.name, _segment_change, group, timeout_s=600):
            apply_change(state, change)
        self.state = state
        self._publish_person_segments(reconcile(state, self._published_person_segments()))
        self._reload = False

    def _published_person_segments(self) -> dict[str, PersonSegments]:
        follower = CompactedFollower(
            self.settings.kafka_bootstrap_servers, self.settings.topics.person_segments.name, PersonSegments.model_validate_json
        )
        try:
            follower.catch_up(timeout_s=600)
        except LookupError:
            return {}  # no topic yet: nothing published
        finally:
            follower.close()
        return follower.values

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                    self._last_step = "ok"
                except Exception as exc:  # noqa: BLE001 - ClickHouse or Kafka away (the projector starting): the next step tries again
                    log.warning("segment evaluation failed (%s: %s); retrying", type(exc).__name__, exc)
                    self._reload = True
                    self._last_step = f"failed ({type(exc).__name__})"
                self.stopping.wait(self.settings.segments_poll_seconds)
        finally:
            self.close()

    def stop(self) -> None:
        self.stopping.set()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready once its state is read back from profile-changes and its last step ran (ClickHouse answered)."""
        return self._last_step == "ok", {"state": "loading" if self._reload else "loaded", "last_step": self._last_step}

    def close(self) -> None:
        self.definitions.close()
        self.producer.flush(10)

    def step(self, now: datetime | None = None) -> list[str]:
        """Evaluate the segments that are due; returns their ids."""
        if self._reload:
            self.load_published()
        try:
            if self._caught_up:
                self.definitions.poll()
            else:
                self.definitions.catch_up()
                self._caught_up = True
        except LookupError:
            pass  # no segments topic yet: no segments
        live = live_segments(self.definitions.values.values())
        persons_changed = self._persons_changed()
        clock = time.monotonic()
        due = []
        for segment in live.values():
            version, at = self.evaluated.get(segment.id, (-1, float("-inf")))
            if (
                version != segment.version
                or clock - at >= self.settings.segments_interval_seconds
                or (persons_changed and is_property_only(segment.condition, live))
            ):
                due.append(segment)
        now = now or datetime.now(UTC)
        for segment in due:
            self.evaluate(segment, live, now)
        for segment_id in set(members_of(self.state)) - set(live):  # deleted: everyone leaves
            self._publish(transitions(segment_id, set(), self.state, members_of(self.state)[segment_id], now))
        return [s.id for s in due]

    def _persons_changed(self) -> bool:
        rows = self.query("SELECT max(version) FROM {db}.persons", {})
        version = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        changed = version != self.persons_version
        self.persons_version = version
        return changed

    def evaluate(self, segment: SegmentDefinition, live: dict[str, SegmentDefinition], now: datetime) -> SegmentStatus:
        started = time.perf_counter()
        try:
            compiled = compile_segment(segment.condition, live, now)
            members = {str(row[0]) for row in self.query(compiled.members_sql(), compiled.parameters)}
        except Exception as exc:  # noqa: BLE001 - a segment that fails says so in its status; the others go on
            log.warning("segment %s: %s", segment.id, exc)
            metrics.SEGMENT_FAILURES.inc()
            failed = SegmentStatus(
                segment_id=segment.id,
                version=segment.version,
                error=str(exc)[:1000],
                error_at=datetime.now(UTC),
                **self._last_success(segment.id),
            )
            self._publish_status(failed)
            self.evaluated[segment.id] = (segment.version, time.monotonic())
            return failed
        inside = members_of(self.state).get(segment.id, set())
        changes = transitions(segment.id, members, self.state, inside, now)
        self._publish(changes)
        status = SegmentStatus(
            segment_id=segment.id,
            version=segment.version,
            evaluated_at=now,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            members=len(members),
            entered=sum(1 for c in changes if c.kind == "segment_entered"),
            exited=sum(1 for c in changes if c.kind == "segment_exited"),
        )
        self._publish_status(status)
        self.evaluated[segment.id] = (segment.version, time.monotonic())
        self.evaluations += 1
        metrics.SEGMENT_EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return status

    def _last_success(self, segment_id: str) -> dict[str, Any]:
        previous = self._statuses.get(segment_id)
        if previous is None:
            return {}
        return {"evaluated_at": previous.evaluated_at, "duration_ms": previous.duration_ms, "members": previous.members}

    def _publish(self, changes: list[ProfileChange]) -> None:
        """Send the changes and wait for every acknowledgement before the state takes them; if any is not
        acknowledged, the state is read back from the topic before the next evaluation."""
        if not changes:
            return
        topic = self.settings.topics.profile_changes.name
        for change in changes:
            self.producer.produce(topic, change.model_dump_json().encode(), change.person_id)
        if self.producer.flush(30) > 0:
            self._reload = True
            raise RuntimeError("profile-changes did not acknowledge the segment changes")
        for change in changes:
            apply_change(self.state, change)
            metrics.SEGMENT_TRANSITIONS.labels(kind=change.kind).inc()
        self._publish_person_segments(records_for({c.person_id for c in changes}, self.state))

    def _publish_person_segments(self, records: list[Record]) -> None:
        """The touched persons' current segments (configs' targeting), acknowledged; if not, the state is read back
        and the topic reconciled with it before the next evaluation."""
        if not records:
            return
        topic = self.settings.topics.person_segments.name
        for key, value in records:
            self.producer.produce(topic, value, key)
        if self.producer.flush(30) > 0:
            self._reload = True
            raise RuntimeError("person-segments did not acknowledge the segment memberships")

    def _publish_status(self, status: SegmentStatus) -> None:
        if status.error is None:
            self._statuses[status.segment_id] = status
        self.producer.produce(self.settings.topics.segment_status.name, status.model_dump_json().encode(), status.segment_id)
        self.producer.poll(0)
