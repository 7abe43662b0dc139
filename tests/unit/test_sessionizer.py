"""The sessionizer, judged by what downstream sees: each event's session id, the SessionMerges and SessionUpdates."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from processors.sessionizer import (
    SESSION_NAMESPACE,
    Assignment,
    DeviceState,
    SessionizerConfig,
    assign,
    close_expired,
    session_id_for,
)
from schemas.events import RawEvent
from schemas.sessions import SessionMerge, SessionUpdate

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
CONFIG = SessionizerConfig()
CHROME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"
IOS_APP = "Shop/5.2.0 CFNetwork/1474 Darwin/23.0.0"
GOOGLEBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) "
    "Chrome/120.0.6099.224 Safari/537.36"
)


def event(message_id: str, at: datetime | timedelta, key: str | None = "anon-1", type: str = "track", **fields: Any) -> RawEvent:
    """A raw event at T0 + `at` (or at `at`), as the collector writes it."""
    timestamp = T0 + at if isinstance(at, timedelta) else at
    return RawEvent(
        message_id=message_id,
        type=type,
        event="Clicked" if type == "track" else None,
        anonymous_id=key,
        timestamp=timestamp,
        received_at=timestamp,
        source_id="web",
        **fields,
    )


@dataclass
class Downstream:
    """What the projector ends up with: events stamped with session ids, merges applied, latest update per session."""

    config: SessionizerConfig = CONFIG
    states: dict[str, DeviceState] = field(default_factory=dict)
    watermark: datetime = datetime.min.replace(tzinfo=UTC)
    stamped: dict[str, str] = field(default_factory=dict)  # message id -> session id
    merged_into: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, SessionUpdate] = field(default_factory=dict)
    emitted: list[SessionUpdate] = field(default_factory=list)

    def feed(self, raw: RawEvent) -> Assignment:
        """Like the faust agent: advance the partition watermark, then assign."""
        self.watermark = max(self.watermark, raw.timestamp)
        result = assign(self.states.get(raw.device_key), raw, self.watermark, self.config)
        self.states[raw.device_key] = result.state
        if not result.duplicate:
            self.stamped.setdefault(raw.message_id, result.session_id)
        self._apply(result.updates, result.merges)
        return result

    def feed_all(self, raws: list[RawEvent]) -> list[Assignment]:
        return [self.feed(raw) for raw in raws]

    def close(self, watermark: datetime) -> list[SessionUpdate]:
        updates = []
        for key, state in list(self.states.items()):
            remaining, ended = close_expired(state, watermark, self.config)
            updates += ended
            if remaining is None:
                del self.states[key]
            else:
                self.states[key] = remaining
        self._apply(updates, [])
        return updates

    def _apply(self, updates: list[SessionUpdate], merges: list[SessionMerge]) -> None:
        for update in updates:
            previous = self.sessions.get(update.session_id)
            # versions grow per session; a duplicate repeats the current update, which the projection's key collapses
            assert previous is None or update.version > previous.version or update == previous, "versions must grow per session"
            self.sessions[update.session_id] = update
            self.emitted.append(update)
        for merge in merges:
            self.merged_into[merge.absorbed_session_id] = merge.survivor_session_id

    def resolve(self, session_id: str) -> str:
        while session_id in self.merged_into:
            session_id = self.merged_into[session_id]
        return session_id

    def live_sessions(self) -> dict[str, SessionUpdate]:
        return {sid: update for sid, update in self.sessions.items() if update.status != "absorbed"}

    def groups(self) -> dict[str, frozenset[str]]:
        """session id -> message ids of its events, after merges."""
        members: dict[str, set[str]] = defaultdict(set)
        for message_id, session_id in self.stamped.items():
            members[self.resolve(session_id)].add(message_id)
        return {sid: frozenset(ids) for sid, ids in members.items()}

    def grouping(self) -> set[frozenset[str]]:
        return set(self.groups().values())

    def summaries(self) -> dict[frozenset[str], tuple]:
        """Per group of message ids: what the session row says (ids and versions left out, they follow arrival)."""
        live = self.live_sessions()
        groups = self.groups()
        assert set(groups) == set(live), "every event's session has a live row and every live row has events"
        return {ids: live[sid].model_dump(exclude={"session_id", "version", "status"}) for sid, ids in groups.items()}


# --- the gap boundary ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inactivity", "same_session"),
    [
        (timedelta(minutes=29, seconds=59, milliseconds=999), True),
        (timedelta(minutes=30), False),
        (timedelta(minutes=30, milliseconds=1), False),
        (timedelta(minutes=29, seconds=59, microseconds=999_999), True),
    ],
)
@pytest.mark.parametrize("arrival", ["in order", "reversed"])
def test_inactivity_of_gap_or_more_starts_a_new_session(inactivity, same_session, arrival):
    raws = [event("m1", timedelta(0)), event("m2", inactivity)]
    downstream = Downstream()
    downstream.feed_all(raws if arrival == "in order" else raws[::-1])

    expected = {frozenset({"m1", "m2"})} if same_session else {frozenset({"m1"}), frozenset({"m2"})}
    assert downstream.grouping() == expected


def test_gap_is_configurable():
    downstream = Downstream(config=SessionizerConfig(gap=timedelta(minutes=5)))
    downstream.feed_all([event(f"m{minute}", timedelta(minutes=minute)) for minute in (0, 4, 9)])
    assert downstream.grouping() == {frozenset({"m0", "m4"}), frozenset({"m9"})}


def test_a_session_spans_midnight():
    before = datetime(2026, 3, 14, 23, 50, tzinfo=UTC)
    downstream = Downstream()
    downstream.feed_all([event("m1", before), event("m2", before + timedelta(minutes=20))])

    [session] = downstream.live_sessions().values()
    assert (session.start, session.end) == (before, datetime(2026, 3, 15, 0, 10, tzinfo=UTC))
    assert session.duration_seconds == 1200.0
    assert session.event_count == 2


# --- ids, order and merges ----------------------------------------------------------------------------------------


def test_session_id_is_uuid5_of_device_key_and_first_message_id():
    assert session_id_for("anon-1", "m1") == str(uuid.uuid5(SESSION_NAMESPACE, "anon-1|m1"))
    result = assign(None, event("m1", timedelta(0)), T0, CONFIG)
    assert result.session_id == session_id_for("anon-1", "m1")
    assert (result.session_seq, result.duplicate, result.late) == (1, False, False)


def test_device_key_falls_back_to_user_id():
    raw = event("m1", timedelta(0), key=None, user_id="user-9")
    result = assign(None, raw, T0, CONFIG)
    assert result.session_id == session_id_for("user-9", "m1")
    assert result.updates[0].device_key == "user-9"


def test_an_earlier_event_extends_the_session_backwards_and_keeps_its_id():
    downstream = Downstream()
    first, second = downstream.feed_all(
        [
            event("m1", timedelta(minutes=10), type="page", properties={"url": "https://shop.example/b"}),
            event("m2", timedelta(minutes=20), type="page", properties={"url": "https://shop.example/c"}),
        ]
    )
    earlier = downstream.feed(event("m0", timedelta(0), type="page", properties={"url": "https://shop.example/a"}))

    assert first.session_id == second.session_id == earlier.session_id == session_id_for("anon-1", "m1")
    assert earlier.session_seq == 3
    [update] = earlier.updates
    assert (update.start, update.end) == (T0, T0 + timedelta(minutes=20))
    assert (update.entry_url, update.exit_url) == ("https://shop.example/a", "https://shop.example/c")
    assert (update.event_count, update.pageview_count, update.version) == (3, 3, 3)


def test_an_event_extends_the_session_forwards():
    downstream = Downstream()
    downstream.feed_all([event("m1", timedelta(0)), event("m2", timedelta(minutes=29))])
    result = downstream.feed(event("m3", timedelta(minutes=58)))
    assert result.session_id == session_id_for("anon-1", "m1")
    assert result.updates[0].end == T0 + timedelta(minutes=58)


def test_a_bridging_event_merges_two_sessions_into_the_earliest():
    downstream = Downstream()
    late_first, *_ = downstream.feed_all(
        [
            event("b1", timedelta(minutes=50), type="page", properties={"url": "https://shop.example/later"}),
            event("b2", timedelta(minutes=55)),
            event("a1", timedelta(0), type="page", properties={"url": "https://shop.example/landing"}),
        ]
    )
    earliest_id, later_id = session_id_for("anon-1", "a1"), session_id_for("anon-1", "b1")
    assert late_first.session_id == later_id
    assert downstream.sessions[later_id].version == 2 and downstream.sessions[earliest_id].version == 1

    bridge = downstream.feed(event("x", timedelta(minutes=25)))

    assert bridge.session_id == earliest_id
    assert bridge.merges == [SessionMerge(absorbed_session_id=later_id, survivor_session_id=earliest_id, device_key="anon-1", version=3)]
    absorbed, survivor = bridge.updates
    assert (absorbed.session_id, absorbed.status, absorbed.absorbed_into) == (later_id, "absorbed", earliest_id)
    assert (absorbed.event_count, absorbed.version) == (2, 3)
    assert (survivor.session_id, survivor.status, survivor.version) == (earliest_id, "open", 3)
    assert (survivor.event_count, survivor.pageview_count, bridge.session_seq) == (4, 2, 4)
    assert (survivor.start, survivor.end) == (T0, T0 + timedelta(minutes=55))
    assert (survivor.entry_url, survivor.exit_url) == ("https://shop.example/landing", "https://shop.example/later")
    assert downstream.grouping() == {frozenset({"a1", "b1", "b2", "x"})}

    after = downstream.feed(event("a2", timedelta(minutes=5)))
    assert (after.session_id, after.updates[0].event_count, after.updates[0].version) == (earliest_id, 5, 4)
    assert len(after.state.sessions) == 1


# --- duplicates ---------------------------------------------------------------------------------------------------


def test_a_duplicate_changes_nothing_and_repeats_what_the_first_copy_produced():
    """The first copy's session, event time and current update: a crash may have lost the first outputs, and a
    retried request's skew-corrected time differs from the first copy's by the network's jitter."""
    first = assign(None, event("m1", timedelta(0)), T0, CONFIG)
    retried = event("m1", timedelta(milliseconds=3), properties={"changed": True})
    again = assign(first.state, retried, T0, CONFIG)
    assert again == Assignment(first.state, first.session_id, 1, T0, duplicate=True, late=False, changes=first.changes, merges=[])
    assert again.updates == first.updates


def test_a_duplicate_in_a_longer_session_repeats_the_sessions_latest_update():
    downstream = Downstream()
    downstream.feed_all([event("a", timedelta(0)), event("b", timedelta(minutes=10)), event("c", timedelta(minutes=20))])
    again = downstream.feed(event("b", timedelta(minutes=11)))
    assert (again.duplicate, again.session_seq, again.event_time) == (True, 2, T0 + timedelta(minutes=10))
    [update] = again.updates
    assert update == downstream.emitted[-2] and (update.event_count, update.version) == (3, 3)


def test_a_duplicate_from_state_written_before_event_times_were_kept_keeps_its_own_time():
    first = assign(None, event("m1", timedelta(0)), T0, CONFIG)
    legacy = orjson.loads(first.state.to_json())
    for session in legacy["sessions"]:
        del session["message_times"]
    again = assign(DeviceState.from_json(orjson.dumps(legacy)), event("m1", timedelta(seconds=1)), T0, CONFIG)
    assert again.duplicate and again.event_time == T0 + timedelta(seconds=1)


def test_a_duplicate_of_an_absorbed_sessions_event_after_the_merge_is_ignored():
    downstream = Downstream()
    downstream.feed_all([event("a", timedelta(0)), event("b", timedelta(minutes=50))])
    downstream.feed(event("x", timedelta(minutes=25)))
    before = (downstream.states["anon-1"], dict(downstream.sessions))

    result = downstream.feed(event("b", timedelta(minutes=50)))

    assert result.duplicate and result.merges == []
    assert result.session_id == downstream.states["anon-1"].sessions[0].id  # the survivor now holds "b"
    assert [(u.session_id, u.status, u.event_count) for u in result.updates] == [(result.session_id, "open", 3)]
    assert (downstream.states["anon-1"], downstream.sessions) == before
    [session] = downstream.live_sessions().values()
    assert session.event_count == 3


def test_the_same_message_id_on_another_device_is_not_a_duplicate():
    downstream = Downstream()
    downstream.feed(event("m1", timedelta(0), key="anon-1"))
    other = downstream.feed(event("m1", timedelta(0), key="anon-2"))
    assert not other.duplicate and other.session_id == session_id_for("anon-2", "m1")


# --- late events --------------------------------------------------------------------------------------------------


def test_lateness_is_measured_from_the_watermark_exclusive():
    watermark = T0 + CONFIG.allowed_lateness
    on_time = assign(None, event("m1", timedelta(0)), watermark, CONFIG)
    late = assign(None, event("m2", -timedelta(microseconds=1)), watermark, CONFIG)
    assert (on_time.late, late.late) == (False, True)


def test_a_late_event_far_from_any_open_session_gets_its_own_late_session():
    watermark = T0 + timedelta(hours=5)
    open_session = assign(None, event("now", timedelta(hours=5)), watermark, CONFIG)

    late = assign(open_session.state, event("old", timedelta(0)), watermark, CONFIG)

    assert late.late and not late.duplicate
    assert late.session_id == str(uuid.uuid5(SESSION_NAMESPACE, "anon-1|late|old"))
    [update] = late.updates
    assert (update.session_id, update.status) == (late.session_id, "open")
    assert (update.event_count, update.late_event_count) == (1, 1)

    also_late = assign(late.state, event("old2", timedelta(minutes=10)), watermark, CONFIG)
    assert also_late.late and also_late.session_id == late.session_id
    assert (also_late.updates[0].event_count, also_late.updates[0].late_event_count) == (2, 2)


def test_a_late_event_within_gap_of_an_open_session_joins_it():
    downstream = Downstream()
    downstream.feed_all([event("m1", timedelta(0)), event("m2", timedelta(hours=2, minutes=20))])
    extend = downstream.feed(event("m3", timedelta(minutes=10)))  # watermark 2:20, so 0:10 is late by 10 minutes

    assert extend.late and extend.session_id == session_id_for("anon-1", "m1")
    assert (extend.updates[0].event_count, extend.updates[0].late_event_count) == (2, 1)


def test_a_late_event_after_its_session_was_ended_starts_a_new_session():
    downstream = Downstream()
    downstream.feed(event("m1", timedelta(0)))
    downstream.feed(event("far", timedelta(hours=3)))
    downstream.close(downstream.watermark)  # ends the session of m1
    result = downstream.feed(event("m2", timedelta(minutes=5)))

    assert result.late and result.session_id == str(uuid.uuid5(SESSION_NAMESPACE, "anon-1|late|m2"))
    assert downstream.sessions[session_id_for("anon-1", "m1")].event_count == 1


# --- closing ------------------------------------------------------------------------------------------------------


def test_close_expired_ends_sessions_past_gap_plus_lateness_and_evicts_the_empty_key():
    opened = assign(None, event("m1", timedelta(0)), T0, CONFIG)
    boundary = T0 + CONFIG.gap + CONFIG.allowed_lateness

    kept, nothing = close_expired(opened.state, boundary, CONFIG)
    assert (kept, nothing) == (opened.state, [])

    evicted, [ended] = close_expired(opened.state, boundary + timedelta(microseconds=1), CONFIG)
    assert evicted is None
    assert (ended.session_id, ended.status, ended.version, ended.event_count) == (opened.session_id, "ended", 2, 1)


def test_close_expired_keeps_the_sessions_still_open():
    downstream = Downstream()
    downstream.feed_all([event("old", timedelta(0)), event("new", timedelta(hours=2))])
    [ended] = downstream.close(T0 + timedelta(hours=2, minutes=31))

    assert ended.session_id == session_id_for("anon-1", "old")
    [remaining] = downstream.states["anon-1"].sessions
    assert remaining.id == session_id_for("anon-1", "new")


def test_ids_of_an_evicted_session_are_forgotten():
    opened = assign(None, event("m1", timedelta(0)), T0, CONFIG)
    watermark = T0 + timedelta(hours=3)
    evicted, _ = close_expired(opened.state, watermark, CONFIG)
    replayed = assign(evicted, event("m1", timedelta(0)), watermark, CONFIG)
    assert not replayed.duplicate and replayed.late


def test_versions_grow_per_session_through_extensions_merges_and_closing():
    downstream = Downstream()  # Downstream asserts growth on every update; here check the exact sequence too
    downstream.feed_all(
        [
            event("a", timedelta(0)),
            event("b", timedelta(minutes=50)),
            event("b2", timedelta(minutes=51)),
            event("b3", timedelta(minutes=52)),
            event("x", timedelta(minutes=25)),
            event("y", timedelta(minutes=53)),
        ]
    )
    downstream.close(T0 + timedelta(hours=4))
    survivor, absorbed = session_id_for("anon-1", "a"), session_id_for("anon-1", "b")

    def versions(session_id):
        return [(u.version, u.status) for u in downstream.emitted if u.session_id == session_id]

    assert versions(absorbed) == [(1, "open"), (2, "open"), (3, "open"), (4, "absorbed")]
    assert versions(survivor) == [(1, "open"), (4, "open"), (5, "open"), (6, "ended")]


# --- session fields from realistic Segment payloads ---------------------------------------------------------------


def analytics_js_page(
    message_id: str, at: timedelta, path: str, referrer: str | None = None, key: str = "anon-1", **context: Any
) -> RawEvent:
    """An analytics.js page() call after the collector: context.page, context.userAgent, user_agent from it."""
    url = f"https://www.shop.example{path}"
    page = {"path": path.split("?")[0], "referrer": referrer or "", "search": "", "title": "Shop", "url": url}
    return event(
        message_id,
        at,
        key=key,
        type="page",
        properties=page,
        user_agent=CHROME_MAC,
        context={
            "library": {"name": "analytics.js", "version": "npm:next-1.64.0"},
            "locale": "en-US",
            "page": page,
            "userAgent": CHROME_MAC,
            **context,
        },
    )


def test_web_session_fields_from_analytics_js_page_calls():
    search_referrer = "https://www.google.com/search?q=shoes"
    campaign = {"name": "spring_sale", "source": "newsletter", "medium": "email", "term": "shoes", "content": "hero"}
    downstream = Downstream()
    downstream.feed_all(
        [
            analytics_js_page("p1", timedelta(0), "/landing?utm_source=ignored", search_referrer, campaign=campaign),
            event("t1", timedelta(minutes=3), properties={"product_id": "sku-1"}, user_agent=CHROME_MAC),
            analytics_js_page("p2", timedelta(minutes=4), "/checkout", "https://www.shop.example/landing"),
            event("i1", timedelta(minutes=5), type="identify", user_id="user-42"),
        ]
    )
    expected = {
        "event_count": 4,
        "pageview_count": 2,
        "bounced": False,
        "entry_url": "https://www.shop.example/landing?utm_source=ignored",
        "exit_url": "https://www.shop.example/checkout",
        "referrer": search_referrer,
        "referring_domain": "google.com",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring_sale",
        "utm_term": "shoes",
        "utm_content": "hero",
        "browser": "Chrome",
        "os": "Mac OS X",
        "device_type": "desktop",
        "distinct_id": "user-42",
        "duration_seconds": 300.0,
    }
    [session] = downstream.live_sessions().values()
    assert session.model_dump(include=set(expected)) == expected


def test_utm_fall_back_to_the_entry_url_and_follow_a_backwards_extension():
    downstream = Downstream()
    downstream.feed(analytics_js_page("p2", timedelta(minutes=2), "/pricing?utm_source=later"))
    assert downstream.live_sessions().popitem()[1].utm_source == "later"

    downstream.feed(analytics_js_page("p1", timedelta(0), "/?utm_source=bing&utm_medium=cpc&utm_campaign=brand&x=1"))
    [session] = downstream.live_sessions().values()
    utm = (session.utm_source, session.utm_medium, session.utm_campaign, session.utm_term, session.utm_content)
    assert utm == ("bing", "cpc", "brand", None, None)
    assert session.entry_url == "https://www.shop.example/?utm_source=bing&utm_medium=cpc&utm_campaign=brand&x=1"


def test_only_a_session_of_exactly_one_page_view_bounces():
    page = assign(None, analytics_js_page("p1", timedelta(0), "/"), T0, CONFIG)
    track = assign(None, event("t1", timedelta(0)), T0, CONFIG)
    page_then_track = assign(page.state, event("t2", timedelta(minutes=1)), T0, CONFIG)
    assert [r.updates[0].bounced for r in (page, track, page_then_track)] == [True, False, False]


def test_mobile_screen_calls_from_an_ios_app():
    def screen(message_id: str, at: timedelta, name: str) -> RawEvent:
        return event(
            message_id,
            at,
            key="B3F2A9C4-7C1E-4E7B-9D51-2F0C7E4B8A11",
            type="screen",
            properties={"name": name},
            user_agent=IOS_APP,
            context={
                "app": {"name": "Shop", "version": "5.2.0", "build": "412", "namespace": "com.example.shop"},
                "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
                "library": {"name": "analytics-ios", "version": "4.1.8"},
                "os": {"name": "iOS", "version": "17.1"},
                "screen": {"width": 393, "height": 852},
            },
        )

    downstream = Downstream()
    downstream.feed(screen("s1", timedelta(0), "Home"))
    [single] = downstream.live_sessions().values()
    assert single.bounced
    downstream.feed(screen("s2", timedelta(seconds=30), "Product"))

    [session] = downstream.live_sessions().values()
    assert (session.browser, session.os, session.device_type) == ("Shop", "iOS", "mobile")
    assert (session.pageview_count, session.bounced, session.entry_url, session.referrer) == (2, False, None, None)


def test_googlebot_is_a_bot():
    raw = event("g1", timedelta(0), type="page", properties={"url": "https://www.shop.example/"}, context={"userAgent": GOOGLEBOT})
    update = assign(None, raw, T0, CONFIG).updates[0]
    assert (update.browser, update.os, update.device_type) == ("Googlebot", None, "bot")


# --- state --------------------------------------------------------------------------------------------------------


def test_state_round_trips_through_json_and_stays_small():
    device = "4d3c2b1a-0f9e-4d8c-b7a6-958473625140"
    downstream = Downstream()
    for minute in range(10):
        at, message_id = timedelta(minutes=minute), str(uuid.uuid4())
        if minute % 3 == 0:
            path = f"/products/{minute}?ref=home"
            downstream.feed(analytics_js_page(message_id, at, path, "https://www.google.com/", key=device))
        else:
            properties = {"product_id": f"sku-{minute}"}
            downstream.feed(event(message_id, at, key=device, user_agent=CHROME_MAC, properties=properties))
    [state] = downstream.states.values()

    encoded = state.to_json()
    print(f"\nstate bytes per key, one 10-event session: {len(encoded)}")
    assert len(encoded) < 4096
    assert DeviceState.from_json(encoded) == state

    following = event("next", timedelta(minutes=11), key=state.device_key)
    assert assign(DeviceState.from_json(encoded), following, T0, CONFIG) == assign(state, following, T0, CONFIG)
