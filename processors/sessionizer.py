"""Sessionization of one device's events, as pure functions over a small JSON-serialisable state.

No I/O: the faust agent keeps a `DeviceState` per device key (anonymousId, else userId) in a table,
calls `assign` for each event and `close_expired` as the partition watermark advances, and emits the
returned `SessionUpdate`s and `SessionMerge`s.

Rules:
- Gap boundary: by event time, an inactivity >= `gap` between two consecutive events starts a new session;
  strictly less than `gap` keeps them together. Sessions are therefore the maximal runs of time-sorted events
  whose consecutive gaps are < `gap`, whatever order the events arrive in.
- Session id: uuid5(SESSION_NAMESPACE, f"{device_key}|{message_id}") of the first event *assigned* to the
  session (arrival order, so a replay of the partition reproduces it). It never changes once emitted, even
  when a later event extends the session backwards.
- Merge: an event within `gap` of two sessions joins them; the one with the earliest start survives, the
  other is emitted once more with status "absorbed" and `absorbed_into`, together with a `SessionMerge`.
  All sessions of one merge get the same version, higher than any version either had, so versions grow
  per session id, and across a merge.
- Late events (timestamp < watermark − allowed_lateness) are kept and flagged (`Assignment.late`,
  `SessionUpdate.late_event_count`). A late event joins (or bridges) still-open sessions within `gap`
  exactly like an on-time one. Otherwise it starts a standalone session with the id
  uuid5(SESSION_NAMESPACE, f"{device_key}|late|{message_id}"); later late events within `gap` of it join it
  while it is held (a late session is usually past the closing horizon, so the next `close_expired` ends it).
  Unlike a gap-bucket id, this id cannot come back after the late session has been ended and evicted, so a
  second incarnation can never overwrite the first one's session row with smaller counts.
- Duplicates: a message id among the last REMEMBERED_MESSAGE_IDS of a held session changes nothing (no state
  change, no new version). The assignment names the session holding it, the first copy's event time, and the
  holding session's current update, so the caller re-sends exactly what the first copy produced: after a
  crash the state may already hold an event whose outputs never left, and a retried request carries a new
  sentAt, so its skew-corrected time differs from the first copy's by the network's jitter. Downstream keys
  then collapse the copy. Ids are remembered only as long as their session is held; `close_expired` forgets
  them with the session.
- Closing: a session ends once end + gap + allowed_lateness < watermark; no later on-time event can reach it.
- session_seq is the session's event count once the event is in it (after a merge: the merged count).
- Earliest/latest (start, entry URL, first touch, exit URL, distinct id) are by event time, ties broken by
  message id, so the final session does not depend on arrival order. The first touch (referrer, campaign,
  browser/OS/device type, see schemas.attribution) is the earliest event's; without a context.campaign
  on it, the UTM fields come from the entry URL's utm_* parameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any, overload

import orjson

from schemas.attribution import Touch, campaign_from_url, page_url, referring_domain, touch_of
from schemas.events import RawEvent
from schemas.sessions import SessionMerge, SessionStatus, SessionUpdate

SESSION_NAMESPACE = uuid.UUID("2aa6b9ae-ee26-4b17-93b5-dd3176f5b63f")
PAGE_VIEW_TYPES = frozenset({"page", "screen"})
# Dedup memory per session: the latest ids by arrival. Retries come within minutes, and a bound keeps the
# state of a very long session (a bot, a kiosk) small; an older duplicate still collapses downstream.
REMEMBERED_MESSAGE_IDS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class SessionizerConfig:
    gap: timedelta = timedelta(minutes=30)
    allowed_lateness: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class Mark:
    """A value with the event it came from: (at, message_id) orders events independently of arrival."""

    at: int  # event time, epoch microseconds (exact, so the gap boundary is exact)
    message_id: str
    value: Any


@dataclass(frozen=True)
class Session:
    """A session not yet ended, reduced to what its SessionUpdate needs, plus its message ids for deduplication."""

    id: str
    version: int  # of the last SessionUpdate emitted for this session
    first: Mark  # earliest event; value: its Touch
    last: Mark  # latest event; value: its distinct id
    entry: Mark | None  # earliest page view with a URL; value: the URL
    exit: Mark | None  # latest page view with a URL; value: the URL
    event_count: int
    pageview_count: int
    late_event_count: int
    message_ids: tuple[str, ...]  # for deduplication, by arrival
    message_times: tuple[int | None, ...]  # the event time of each remembered id (None in state written before times were kept)

    @property
    def start(self) -> int:
        return self.first.at

    @property
    def end(self) -> int:
        return self.last.at


@dataclass(frozen=True)
class DeviceState:
    """Everything the sessionizer remembers about one device key: its sessions not yet ended."""

    device_key: str
    sessions: tuple[Session, ...] = field(default_factory=tuple)  # ordered by start

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes) -> DeviceState:
        raw = orjson.loads(data)
        return cls(device_key=raw["device_key"], sessions=tuple(_session_from_dict(s) for s in raw["sessions"]))


def _mark_from_dict(raw: dict[str, Any] | None, value_type: type | None = None) -> Mark | None:
    if raw is None:
        return None
    value = value_type(**raw["value"]) if value_type else raw["value"]
    return Mark(at=raw["at"], message_id=raw["message_id"], value=value)


def _session_from_dict(raw: dict[str, Any]) -> Session:
    return Session(
        **{
            **raw,
            "first": _mark_from_dict(raw["first"], Touch),
            "last": _mark_from_dict(raw["last"]),
            "entry": _mark_from_dict(raw["entry"]),
            "exit": _mark_from_dict(raw["exit"]),
            "message_ids": tuple(raw["message_ids"]),
            "message_times": tuple(raw.get("message_times") or [None] * len(raw["message_ids"])),
        }
    )


@dataclass
class Assignment:
    state: DeviceState  # the new state for this device key
    session_id: str | None  # for a duplicate: the session that already holds it
    session_seq: int | None  # 1-based arrival order of the event within its session (after a merge: in the merged one)
    event_time: datetime  # the event's time; for a duplicate, the first copy's (so downstream keys collapse it)
    duplicate: bool
    late: bool
    updates: list[SessionUpdate]  # every session whose state changed (incl. absorbed ones)
    merges: list[SessionMerge]


def session_id_for(device_key: str, first_message_id: str) -> str:
    return str(uuid.uuid5(SESSION_NAMESPACE, f"{device_key}|{first_message_id}"))


def _late_session_id(device_key: str, message_id: str) -> str:
    return str(uuid.uuid5(SESSION_NAMESPACE, f"{device_key}|late|{message_id}"))


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _datetime(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _event_order(mark: Mark) -> tuple[int, str]:
    return mark.at, mark.message_id


@overload
def _earliest(a: Mark, b: Mark | None) -> Mark: ...
@overload
def _earliest(a: Mark | None, b: Mark | None) -> Mark | None: ...
def _earliest(a: Mark | None, b: Mark | None) -> Mark | None:
    return min((mark for mark in (a, b) if mark), key=_event_order, default=None)


@overload
def _latest(a: Mark, b: Mark | None) -> Mark: ...
@overload
def _latest(a: Mark | None, b: Mark | None) -> Mark | None: ...
def _latest(a: Mark | None, b: Mark | None) -> Mark | None:
    return max((mark for mark in (a, b) if mark), key=_event_order, default=None)


def _session_of_one(event: RawEvent, session_id: str, late: bool) -> Session:
    at = _micros(event.timestamp)
    is_page_view = event.type in PAGE_VIEW_TYPES
    url = page_url(event) if is_page_view else None
    page_mark = Mark(at, event.message_id, url) if url else None
    return Session(
        id=session_id,
        version=0,
        first=Mark(at, event.message_id, touch_of(event)),
        last=Mark(at, event.message_id, event.distinct_id or None),
        entry=page_mark,
        exit=page_mark,
        event_count=1,
        pageview_count=int(is_page_view),
        late_event_count=int(late),
        message_ids=(event.message_id,),
        message_times=(at,),
    )


def _combine(kept: Session, other: Session) -> Session:
    """One session holding the events of both; it keeps the id and version of `kept`."""
    return replace(
        kept,
        first=_earliest(kept.first, other.first),
        last=_latest(kept.last, other.last),
        entry=_earliest(kept.entry, other.entry),
        exit=_latest(kept.exit, other.exit),
        event_count=kept.event_count + other.event_count,
        pageview_count=kept.pageview_count + other.pageview_count,
        late_event_count=kept.late_event_count + other.late_event_count,
        message_ids=(kept.message_ids + other.message_ids)[-REMEMBERED_MESSAGE_IDS:],
        message_times=(kept.message_times + other.message_times)[-REMEMBERED_MESSAGE_IDS:],
    )


def _update(
    device_key: str, session: Session, status: SessionStatus, absorbed_into: str | None = None
) -> SessionUpdate:
    """The whole session as downstream sees it; UTM fall back to the entry URL when the first event had no campaign."""
    touch: Touch = session.first.value
    entry_url = session.entry.value if session.entry else None
    campaign = touch.campaign or campaign_from_url(entry_url)
    return SessionUpdate(
        session_id=session.id,
        device_key=device_key,
        version=session.version,
        status=status,
        absorbed_into=absorbed_into,
        start=_datetime(session.start),
        end=_datetime(session.end),
        duration_seconds=(session.end - session.start) / 1_000_000,
        event_count=session.event_count,
        pageview_count=session.pageview_count,
        bounced=session.event_count == 1 and session.pageview_count == 1,
        entry_url=entry_url,
        exit_url=session.exit.value if session.exit else None,
        referrer=touch.referrer,
        referring_domain=referring_domain(touch.referrer),
        utm_source=campaign.get("source"),
        utm_medium=campaign.get("medium"),
        utm_campaign=campaign.get("campaign"),
        utm_term=campaign.get("term"),
        utm_content=campaign.get("content"),
        browser=touch.browser,
        os=touch.os,
        device_type=touch.device_type,
        distinct_id=session.last.value,
        late_event_count=session.late_event_count,
    )


def assign(state: DeviceState | None, event: RawEvent, watermark: datetime, config: SessionizerConfig) -> Assignment:
    """Put one event into its device's sessions; see the module docstring for the rules."""
    state = state or DeviceState(device_key=event.device_key)
    key = state.device_key
    for session in state.sessions:
        if event.message_id in session.message_ids:
            # Counted once already: re-sent as the first copy was, with its session's current update.
            index = session.message_ids.index(event.message_id)
            seq = session.event_count - len(session.message_ids) + index + 1
            first_at = session.message_times[index]
            event_time = event.timestamp if first_at is None else _datetime(first_at)
            current = _update(key, session, "open")
            return Assignment(state, session.id, seq, event_time, duplicate=True, late=False, updates=[current], merges=[])

    late = event.timestamp < watermark - config.allowed_lateness
    at, gap = _micros(event.timestamp), config.gap // _MICROSECOND
    within_gap = [s for s in state.sessions if s.start - gap < at < s.end + gap]  # by start, as state keeps them
    untouched = [s for s in state.sessions if s not in within_gap]

    if within_gap:
        survivor, *absorbed = within_gap
        session = reduce(_combine, [*absorbed, _session_of_one(event, survivor.id, late)], survivor)
    else:
        absorbed = []
        session = _session_of_one(event, (_late_session_id if late else session_id_for)(key, event.message_id), late)
    version = max((s.version for s in within_gap), default=0) + 1
    session = replace(session, version=version)

    updates = [_update(key, replace(s, version=version), "absorbed", absorbed_into=session.id) for s in absorbed]
    updates.append(_update(key, session, "open"))
    merges = [
        SessionMerge(absorbed_session_id=s.id, survivor_session_id=session.id, device_key=key, version=version)
        for s in absorbed
    ]
    new_state = DeviceState(key, tuple(sorted([*untouched, session], key=lambda s: s.start)))
    return Assignment(new_state, session.id, session.event_count, event.timestamp, False, late, updates, merges)


def close_expired(
    state: DeviceState, watermark: datetime, config: SessionizerConfig
) -> tuple[DeviceState | None, list[SessionUpdate]]:
    """End the sessions no on-time event can reach any more; None when none is left, so the caller evicts the key."""
    horizon = _micros(watermark - config.gap - config.allowed_lateness)
    expired = [s for s in state.sessions if s.end < horizon]
    if not expired:
        return state, []
    updates = [_update(state.device_key, replace(s, version=s.version + 1), "ended") for s in expired]
    remaining = tuple(s for s in state.sessions if s.end >= horizon)
    return (DeviceState(state.device_key, remaining) if remaining else None), updates
