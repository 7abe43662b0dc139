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

Stage rules that need ClickHouse (behaviour, sessions, last seen, tags, lists, stage, status, identity, segment
membership; schemas/stages.py) are decided here too, on the same schedule: the persons meeting a rule, in a
stage before the rule's, never moved by it, get a stage command on `user-commands` (a compare-and-set from the
stage read, by `rule:<stage id>`, its id derived from person, rule and that stage), acknowledged before the
next step. A restart or a re-evaluation that decides a move again sends the same command; the projector keeps
it once, and its stage walk applies each rule at most once per person and never from a stage the person left.

    lifecycle-stages (compacted) ─► evaluator ─► SELECT person_id, stage FROM persons FINAL WHERE <rule> ...
                                         │
               user-commands ◄───────────┘ stage moves (key: person id)

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

import contextlib
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
    Membership,
    SegmentDefinition,
    SegmentStatus,
    compile_segment,
    is_property_only,
    live_segments,
    transitions,
)
from schemas.stages import (
    ClickHouseRule,
    StageDefinition,
    candidates_query,
    clickhouse_rules,
    effective_stages,
    move_command,
    owed_moves,
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
        self.stages = CompactedFollower(settings.kafka_bootstrap_servers, topics.lifecycle_stages.name, StageDefinition.model_validate_json)
        self.rules_evaluated: dict[str, tuple[int, float]] = {}  # rule id → (stage version, monotonic time) of its last run
        self.rule_moves = 0  # stage moves published
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True})
        # Stage moves go where the API's commands for the same person go (its partitioner: api/commands.py).
        self.commands = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
            }
        )
        self.membership = Membership()
        self.evaluated: dict[str, tuple[int, float]] = {}  # segment id → (definition version, monotonic time) of its last run
        self.persons_version: int | None = None
        self.stopping = threading.Event()
        self.evaluations = 0
        self._statuses: dict[str, SegmentStatus] = {}  # the last successful evaluation of each segment
        self._reload = True
        self._caught_up: set[str] = set()  # the followed topics read to their end once
        self._last_step = "not run yet"

    def load_published(self) -> None:
        """The membership every segment change published so far says (the evaluator's whole state)."""
        membership = Membership()
        group = f"{self.settings.topic_prefix}-segments-state"
        for change in read_to_end(self.settings, self.settings.topics.profile_changes.name, _segment_change, group, timeout_s=600):
            membership.apply(change)
        self.membership = membership
        self._publish_person_segments(reconcile(membership.standings, self._published_person_segments()))
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
        self.stages.close()
        self.producer.flush(10)
        self.commands.flush(10)

    def step(self, now: datetime | None = None) -> list[str]:
        """Evaluate the segments that are due; returns their ids."""
        if self._reload:
            self.load_published()
        for follower in (self.definitions, self.stages):
            with contextlib.suppress(LookupError):  # no such topic yet: no segments, or the default stages (no rules)
                if follower.topic in self._caught_up:
                    follower.poll()
                else:
                    follower.catch_up()
                    self._caught_up.add(follower.topic)
        live = live_segments(self.definitions.values.values())
        persons_changed = self._persons_changed()
        clock = time.monotonic()

        def is_due(last: tuple[int, float] | None, version: int, condition: Any) -> bool:
            """Never run at this version, the interval is up, or the persons changed and only they matter."""
            ran_version, at = last or (-1, float("-inf"))
            return (
                ran_version != version
                or clock - at >= self.settings.segments_interval_seconds
                or (persons_changed and is_property_only(condition, live))
            )

        due = [segment for segment in live.values() if is_due(self.evaluated.get(segment.id), segment.version, segment.condition)]
        now = now or datetime.now(UTC)
        for segment in due:
            self.evaluate(segment, live, now)
        for segment_id in set(self.membership.inside) - set(live):  # deleted: everyone leaves
            self._publish(transitions(segment_id, set(), self.membership.standings, self.membership.members(segment_id), now))
        rules = clickhouse_rules(effective_stages(self.stages.values.values()))
        if due_rules := [rule for rule in rules if is_due(self.rules_evaluated.get(rule.rule), rule.version, rule.condition)]:
            self.evaluate_stage_rules(due_rules, live, now)
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
        inside = self.membership.members(segment.id)
        changes = transitions(segment.id, members, self.membership.standings, inside, now)
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

    def evaluate_stage_rules(self, rules: list[ClickHouseRule], live: dict[str, SegmentDefinition], now: datetime) -> int:
        """Publish the forward moves these rules (furthest stage first) owe: a person meeting several goes to the
        furthest stage. Returns how many were published."""
        candidates = []
        for rule in rules:
            try:
                compiled = compile_segment(rule.condition, live, now)
                sql, parameters = candidates_query(rule, compiled.where, compiled.parameters)
                candidates.append((rule, [(str(r[0]), str(r[1])) for r in self.query(sql, parameters)]))
            except Exception as exc:  # noqa: BLE001 - one failing rule does not hold up the others; tried again next time
                log.warning("stage rule %s: %s", rule.rule, exc)
                metrics.STAGE_RULE_FAILURES.inc()
        # Moves decided before whose compare-and-set failed (few): not sent again. Those that took effect are no
        # candidates; those in flight are sent again with the same id, and kept once.
        failed = self.query(
            "SELECT command_id FROM {db}.stage_history FINAL WHERE has({rules:Array(String)}, by) AND NOT effective",
            {"rules": [rule.rule for rule, _ in candidates]},
        )
        written = {str(row[0]) for row in failed}
        moves = owed_moves(candidates, written)
        topic = self.settings.topics.user_commands.name
        for owed in moves:
            command = move_command(owed.person_id, owed.move, owed.from_stage, now)
            self.commands.produce(topic, command.model_dump_json().encode(), command.person_id)
        if moves and self.commands.flush(30) > 0:
            raise RuntimeError("user-commands did not acknowledge the stage rules' moves")
        for rule, _ in candidates:
            self.rules_evaluated[rule.rule] = (rule.version, time.monotonic())
        self.rule_moves += len(moves)
        metrics.STAGE_RULE_MOVES.inc(len(moves))
        return len(moves)

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
            self.membership.apply(change)
            metrics.SEGMENT_TRANSITIONS.labels(kind=change.kind).inc()
        self._publish_person_segments(records_for({c.person_id for c in changes}, self.membership.standings, self.membership.segments))

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
