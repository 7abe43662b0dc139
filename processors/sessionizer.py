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

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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


@dataclass(slots=True)
class Mark:
    """A value with the event it came from: (at, message_id) orders events independently of arrival."""

    at: int  # event time, epoch microseconds (exact, so the gap boundary is exact)
    message_id: str
    value: Any


@dataclass(slots=True)
class Session:
    """A session not yet ended, reduced to what its SessionUpdate needs, plus its message ids for deduplication.

    Marks and sessions are never changed once in a state (a change builds new ones); they are not frozen
    dataclasses only because building a frozen one costs several times more, once per event."""

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


Change = tuple[Session, SessionStatus, str | None]  # a session whose state changed, its status, what absorbed it


@dataclass
class Assignment:
    state: DeviceState  # the new state for this device key
    session_id: str | None  # for a duplicate: the session that already holds it
    session_seq: int | None  # 1-based arrival order of the event within its session (after a merge: in the merged one)
    event_time: datetime  # the event's time; for a duplicate, the first copy's (so downstream keys collapse it)
    duplicate: bool
    late: bool
    changes: list[Change]  # every session whose state changed (incl. absorbed ones), as `updates` renders them
    merges: list[SessionMerge]

    @property
    def updates(self) -> list[SessionUpdate]:
        """The changed sessions as downstream sees them. Rendering one costs more than assigning an event, so a
        caller that sends only a session's latest update per batch renders only that (session_update)."""
        return [session_update(self.state.device_key, session, status, into) for session, status, into in self.changes]


def session_id_for(device_key: str, first_message_id: str) -> str:
    return uuid5_text(SESSION_NAMESPACE, f"{device_key}|{first_message_id}")


def _late_session_id(device_key: str, message_id: str) -> str:
    return uuid5_text(SESSION_NAMESPACE, f"{device_key}|late|{message_id}")


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """str(uuid.uuid5(namespace, name)) without building the UUID object, which cost more than the hash."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _datetime(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


@overload
def _earliest(a: Mark, b: Mark | None) -> Mark: ...
@overload
def _earliest(a: Mark | None, b: Mark | None) -> Mark | None: ...
def _earliest(a: Mark | None, b: Mark | None) -> Mark | None:
    """The earlier by event order; `a` on a tie."""
    if a is None or b is None:
        return a or b
    return b if (b.at, b.message_id) < (a.at, a.message_id) else a


@overload
def _latest(a: Mark, b: Mark | None) -> Mark: ...
@overload
def _latest(a: Mark | None, b: Mark | None) -> Mark | None: ...
def _latest(a: Mark | None, b: Mark | None) -> Mark | None:
    """The later by event order; `a` on a tie."""
    if a is None or b is None:
        return a or b
    return b if (b.at, b.message_id) > (a.at, a.message_id) else a


def _session_of_one(event: RawEvent, session_id: str, late: bool, at: int, version: int = 0) -> Session:
    """A session of this event alone. Its first touch is left to fill in (`_with_touch`): it is needed only when
    the event turns out to be its session's earliest, and working it out is most of an event's cost."""
    is_page_view = event.type in PAGE_VIEW_TYPES
    url = page_url(event) if is_page_view else None
    page_mark = Mark(at, event.message_id, url) if url else None
    return Session(
        id=session_id,
        version=version,
        first=Mark(at, event.message_id, None),
        last=Mark(at, event.message_id, event.distinct_id or None),
        entry=page_mark,
        exit=page_mark,
        event_count=1,
        pageview_count=int(is_page_view),
        late_event_count=int(late),
        message_ids=(event.message_id,),
        message_times=(at,),
    )


def _with_touch(session: Session, event: RawEvent) -> Session:
    """The session (just built, not yet in any state) with its first touch worked out, when `event` is its
    earliest (see _session_of_one)."""
    if session.first.value is None:
        session.first = Mark(session.first.at, session.first.message_id, touch_of(event))
    return session


def _extend(kept: Session, event: RawEvent, late: bool, at: int, version: int) -> Session:
    """`kept` with one more event: what `_combine` with the event's session of one gives, without building it
    (the common case). A first mark left without its touch is filled in by `_with_touch`."""
    message_id = event.message_id
    is_page_view = event.type in PAGE_VIEW_TYPES
    first, last, entry, exit_ = kept.first, kept.last, kept.entry, kept.exit
    if (at, message_id) < (first.at, first.message_id):
        first = Mark(at, message_id, None)
    if (at, message_id) > (last.at, last.message_id):
        last = Mark(at, message_id, event.distinct_id or None)
    if is_page_view and (url := page_url(event)):
        page_mark = Mark(at, message_id, url)
        entry, exit_ = _earliest(entry, page_mark), _latest(exit_, page_mark)
    return Session(
        id=kept.id,
        version=version,
        first=first,
        last=last,
        entry=entry,
        exit=exit_,
        event_count=kept.event_count + 1,
        pageview_count=kept.pageview_count + int(is_page_view),
        late_event_count=kept.late_event_count + int(late),
        message_ids=(kept.message_ids + (message_id,))[-REMEMBERED_MESSAGE_IDS:],
        message_times=(kept.message_times + (at,))[-REMEMBERED_MESSAGE_IDS:],
    )


def _combine(kept: Session, other: Session, version: int | None = None) -> Session:
    """One session holding the events of both; it keeps the id (and, unless given, the version) of `kept`."""
    return Session(
        id=kept.id,
        version=kept.version if version is None else version,
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


def session_update(device_key: str, session: Session, status: SessionStatus, absorbed_into: str | None = None) -> SessionUpdate:
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


def session_update_json(device_key: str, session: Session, status: SessionStatus, absorbed_into: str | None = None) -> bytes:
    """`session_update(...).model_dump_json()`, built straight from the session: building and validating the
    pydantic model cost more than sessionizing an event, and every batch renders each changed session once."""
    touch: Touch = session.first.value
    entry_url = session.entry.value if session.entry else None
    campaign = touch.campaign or campaign_from_url(entry_url)
    return orjson.dumps(
        {
            "kind": "session",
            "session_id": session.id,
            "device_key": device_key,
            "version": session.version,
            "status": status,
            "absorbed_into": absorbed_into,
            "start": _datetime(session.start),
            "end": _datetime(session.end),
            "duration_seconds": (session.end - session.start) / 1_000_000,
            "event_count": session.event_count,
            "pageview_count": session.pageview_count,
            "bounced": session.event_count == 1 and session.pageview_count == 1,
            "entry_url": entry_url,
            "exit_url": session.exit.value if session.exit else None,
            "referrer": touch.referrer,
            "referring_domain": referring_domain(touch.referrer),
            "utm_source": campaign.get("source"),
            "utm_medium": campaign.get("medium"),
            "utm_campaign": campaign.get("campaign"),
            "utm_term": campaign.get("term"),
            "utm_content": campaign.get("content"),
            "browser": touch.browser,
            "os": touch.os,
            "device_type": touch.device_type,
            "distinct_id": session.last.value,
            "person_id": None,
            "late_event_count": session.late_event_count,
        },
        option=orjson.OPT_UTC_Z,
    )


def assign(state: DeviceState | None, event: RawEvent, watermark: datetime, config: SessionizerConfig) -> Assignment:
    """Put one event into its device's sessions; see the module docstring for the rules."""
    state = state or DeviceState(device_key=event.device_key)
    key, message_id = state.device_key, event.message_id
    for session in state.sessions:
        if message_id in session.message_ids:
            # Counted once already: re-sent as the first copy was, with its session's current update.
            index = session.message_ids.index(message_id)
            seq = session.event_count - len(session.message_ids) + index + 1
            first_at = session.message_times[index]
            event_time = event.timestamp if first_at is None else _datetime(first_at)
            return Assignment(state, session.id, seq, event_time, duplicate=True, late=False, changes=[(session, "open", None)], merges=[])

    late = event.timestamp < watermark - config.allowed_lateness
    at, gap = _micros(event.timestamp), config.gap // _MICROSECOND
    within_gap: list[Session] = []  # by start, as state keeps them
    untouched: list[Session] = []
    for session in state.sessions:
        (within_gap if session.start - gap < at < session.end + gap else untouched).append(session)

    if within_gap:
        survivor, *absorbed = within_gap
        version = max(s.version for s in within_gap) + 1
        session = survivor
        for other in absorbed:
            session = _combine(session, other)
        session = _extend(session, event, late, at, version)
    else:
        absorbed, version = [], 1
        session_id = (_late_session_id if late else session_id_for)(key, message_id)
        session = _session_of_one(event, session_id, late, at, version)
    session = _with_touch(session, event)

    changes: list[Change] = [(replace(s, version=version), "absorbed", session.id) for s in absorbed]
    changes.append((session, "open", None))
    merges = [SessionMerge(absorbed_session_id=s.id, survivor_session_id=session.id, device_key=key, version=version) for s in absorbed]
    sessions = tuple(sorted([*untouched, session], key=_start)) if untouched else (session,)
    return Assignment(DeviceState(key, sessions), session.id, session.event_count, event.timestamp, False, late, changes, merges)


def _start(session: Session) -> int:
    return session.first.at


def closing_horizon(watermark: datetime, config: SessionizerConfig) -> int:
    """Event time (epoch µs) a session must end before for `close_expired` to end it at this watermark."""
    return _micros(watermark - config.gap - config.allowed_lateness)


def earliest_end(state: DeviceState) -> int | None:
    """When the first of the device's sessions could end: the earliest of their ends (None: no session)."""
    return min((s.end for s in state.sessions), default=None)


def close_expired(state: DeviceState, watermark: datetime, config: SessionizerConfig) -> tuple[DeviceState | None, list[SessionUpdate]]:
    """End the sessions no on-time event can reach any more; None when none is left, so the caller evicts the key."""
    horizon = closing_horizon(watermark, config)
    expired = [s for s in state.sessions if s.end < horizon]
    if not expired:
        return state, []
    updates = [session_update(state.device_key, replace(s, version=s.version + 1), "ended") for s in expired]
    remaining = tuple(s for s in state.sessions if s.end >= horizon)
    return (DeviceState(state.device_key, remaining) if remaining else None), updates
