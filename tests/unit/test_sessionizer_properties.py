"""Properties of the sessionizer over generated streams, judged on what downstream folds from its output."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.sessionizer import SessionizerConfig
from schemas.events import RawEvent
from tests.unit.test_sessionizer import CONFIG, Downstream, event

thorough = settings(max_examples=200, deadline=None)  # per test, not a global profile: other suites keep theirs

GAP_MS = CONFIG.gap // timedelta(milliseconds=1)
LATENESS_MS = CONFIG.allowed_lateness // timedelta(milliseconds=1)

# Offsets in ms; half of them sit on or a millisecond off a multiple of the gap, where the boundary bites.
offsets_ms = st.one_of(
    st.integers(0, LATENESS_MS),
    st.builds(
        lambda k, d: min(LATENESS_MS, max(0, k * GAP_MS + d)),
        st.integers(0, LATENESS_MS // GAP_MS),
        st.sampled_from([-1, 0, 1]),
    ),
)


@st.composite
def device_events(draw, key: str = "anon-1", offsets=offsets_ms, max_size: int = 12) -> list[RawEvent]:
    """One device's events with unique message ids; some pages with URLs so entry/exit take part."""
    times = draw(st.lists(offsets, min_size=1, max_size=max_size))
    kinds = draw(st.lists(st.sampled_from(["page", "track", "screen"]), min_size=len(times), max_size=len(times)))
    return [
        event(
            f"{key}-{index}",
            timedelta(milliseconds=ms),
            key=key,
            type=kind,
            properties={"url": f"https://shop.example/{index}"} if kind == "page" else {},
        )
        for index, (ms, kind) in enumerate(zip(times, kinds, strict=True))
    ]


def sessionized(raws: list[RawEvent], config: SessionizerConfig = CONFIG) -> Downstream:
    downstream = Downstream(config=config)
    downstream.feed_all(raws)
    return downstream


def runs_by_gap(raws: list[RawEvent], gap: timedelta) -> set[frozenset[str]]:
    """The reference: time-sorted events split wherever consecutive events are `gap` or more apart."""
    ordered = sorted(raws, key=lambda raw: raw.timestamp)
    runs, current = [], [ordered[0]]
    for previous, following in zip(ordered, ordered[1:], strict=False):
        if following.timestamp - previous.timestamp >= gap:
            runs.append(current)
            current = []
        current.append(following)
    runs.append(current)
    return {frozenset(raw.message_id for raw in run) for run in runs}


@thorough
@given(st.data())
def test_arrival_order_within_lateness_does_not_change_the_sessions(data):
    raws = data.draw(device_events())
    shuffled = data.draw(st.permutations(raws))

    in_order, reordered = sessionized(sorted(raws, key=lambda raw: raw.timestamp)), sessionized(shuffled)

    assert reordered.summaries() == in_order.summaries()
    assert all(row.late_event_count == 0 for row in reordered.live_sessions().values())


@thorough
@given(st.data())
def test_feeding_events_twice_anywhere_changes_nothing(data):
    raws = data.draw(device_events())
    repeated = data.draw(st.lists(st.sampled_from(raws), min_size=1, max_size=len(raws) * 2))
    stream = data.draw(st.permutations(raws + repeated))

    with_duplicates = sessionized(stream)

    assert with_duplicates.summaries() == sessionized(raws).summaries()
    assert sum(s.event_count for s in with_duplicates.live_sessions().values()) == len(raws)


@thorough
@given(device_events(max_size=20), st.sampled_from([timedelta(minutes=30), timedelta(minutes=5), timedelta(seconds=1)]))
def test_sessions_are_the_maximal_runs_with_gaps_below_the_gap(raws, gap):
    downstream = sessionized(sorted(raws, key=lambda raw: raw.timestamp), SessionizerConfig(gap=gap))

    assert downstream.grouping() == runs_by_gap(raws, gap)
    for ids, summary in downstream.summaries().items():
        members = [raw for raw in raws if raw.message_id in ids]
        assert summary["start"] == min(raw.timestamp for raw in members)
        assert summary["end"] == max(raw.timestamp for raw in members)
        assert summary["event_count"] == len(members)


@thorough
@given(st.data())
def test_interleaving_devices_is_the_same_as_sessionizing_each_alone(data):
    keys = [f"device-{n}" for n in range(data.draw(st.integers(2, 5)))]
    streams = {key: data.draw(device_events(key=key, max_size=8)) for key in keys}
    order = data.draw(st.permutations([key for key, raws in streams.items() for _ in raws]))
    cursors = {key: iter(raws) for key, raws in streams.items()}

    together = sessionized([next(cursors[key]) for key in order])

    for key, raws in streams.items():
        alone = sessionized(raws)
        assert [u for u in together.emitted if u.device_key == key] == alone.emitted
        assert together.states[key] == alone.states[key]


# Arbitrary order over eight hours, with closing in between: late events and evictions happen.
wide_offsets_ms = st.integers(0, 8 * 3_600_000)


@thorough
@given(st.data())
def test_downstream_stays_consistent_with_late_events_and_closing(data):
    raws = data.draw(device_events(offsets=wide_offsets_ms, max_size=25))
    close_after = data.draw(st.sets(st.integers(0, len(raws) - 1)))
    downstream = Downstream()

    late_events = 0
    for index, raw in enumerate(raws):
        watermark = max(downstream.watermark, raw.timestamp)
        result = downstream.feed(raw)
        assert result.late == (raw.timestamp < watermark - CONFIG.allowed_lateness)
        assert result.session_id is not None and result.session_seq >= 1
        late_events += result.late
        if index in close_after:
            downstream.close(downstream.watermark)

    rows = downstream.live_sessions()
    groups = downstream.groups()
    assert set(groups) == set(rows)
    assert sum(row.late_event_count for row in rows.values()) == late_events
    for session_id, ids in groups.items():
        members = [raw for raw in raws if raw.message_id in ids]
        row = rows[session_id]
        assert row.event_count == len(members)
        assert (row.start, row.end) == (min(r.timestamp for r in members), max(r.timestamp for r in members))
