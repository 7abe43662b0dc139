"""Properties of the profile reducer that must hold for any events: order independence, idempotence, merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.profiles import EMPTY, ProfileState, fold, fold_all, merge, properties_of
from schemas.events import EnrichedEvent

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
KEYS = ["plan", "email", "seats", "source"]

examples = settings(max_examples=150, deadline=None)

values = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["pro", "free", "ann@acme.com", "bob@gmail.com"]))
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
contexts = st.fixed_dictionaries(  # web context: a page and/or a campaign, or neither (a server-side call)
    {},
    optional={
        "page": st.fixed_dictionaries({"referrer": st.sampled_from(["", "https://www.google.com/", "https://n.ex/"])}),
        "campaign": st.fixed_dictionaries({"source": st.sampled_from(["ads", "mail"])}),
        "geo": st.fixed_dictionaries(  # the collector's GeoIP lookup (ingest/geo.py), or a client's
            {"country": st.sampled_from(["DE", "FR", ""])}, optional={"city": st.sampled_from(["Berlin", "Paris"])}
        ),
    },
)
shapes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["identify", "track", "page", "group"]),
        "at_ms": st.integers(0, 20),  # a narrow range: ties in event time are common
        "traits": objects,
        "properties": st.fixed_dictionaries(
            {}, optional={"$set": objects, "$set_once": objects, "$unset": st.lists(st.sampled_from(KEYS), max_size=2)}
        ),
        "context": contexts,
        "user_agent": st.sampled_from([None, "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X)", "curl/8.4.0"]),
    }
)


def numbered(prefix: str, drawn: list[dict]) -> list[EnrichedEvent]:
    """Events with unique message ids (the message id identifies an event)."""
    return [
        EnrichedEvent(
            message_id=f"{prefix}{i}",
            type=shape["type"],
            timestamp=T0 + timedelta(milliseconds=shape["at_ms"]),
            received_at=T0,
            source_id="web",
            anonymous_id="anon",
            traits=shape["traits"],
            properties=shape["properties"],
            context=shape["context"],
            user_agent=shape["user_agent"],
        )
        for i, shape in enumerate(drawn)
    ]


def events(prefix: str = "m", min_size: int = 0) -> st.SearchStrategy[list[EnrichedEvent]]:
    return st.lists(shapes, min_size=min_size, max_size=8).map(lambda drawn: numbered(prefix, drawn))


def run(events: list[EnrichedEvent], state: ProfileState = EMPTY) -> ProfileState:
    return reduce(fold, events, state)


@examples
@given(events(), st.data())
def test_any_order_gives_the_same_state(evs, data):
    assert run(data.draw(st.permutations(evs))) == run(evs)


@examples
@given(events(min_size=1), st.data())
def test_a_redelivered_event_changes_nothing_wherever_it_comes(evs, data):
    again = data.draw(st.sampled_from(evs))
    at = data.draw(st.integers(0, len(evs)))
    assert run(evs[:at] + [again] + evs[at:]) == run(evs)


@examples
@given(events())
def test_the_state_survives_its_json(evs):
    state = run(evs)
    assert ProfileState.from_json(state.to_json()) == state


@examples
@given(events("i"), events("a"))
def test_merge_keeps_into_values_and_takes_absorbed_values_only_for_untouched_keys(into_events, absorbed_events):
    into, absorbed = run(into_events), run(absorbed_events)
    merged = merge(into, absorbed)
    touched = into.props.keys() | into.once.keys()
    expected = {k: v for k, v in properties_of(absorbed).items() if k not in touched} | properties_of(into)
    assert properties_of(merged) == expected


@examples
@given(events("i", min_size=1), events("a", min_size=1))
def test_merge_takes_the_extremes_of_seen_touch_and_device(into_events, absorbed_events):
    into, absorbed = run(into_events), run(absorbed_events)
    merged = merge(into, absorbed)
    everything = run(into_events + absorbed_events)
    assert merged.first_seen == min(into.first_seen, absorbed.first_seen)
    assert merged.last_seen == max(into.last_seen, absorbed.last_seen)
    assert (merged.touch, merged.device) == (everything.touch, everything.device)
    assert (merged.first_geo, merged.last_geo) == (everything.first_geo, everything.last_geo)


@examples
@given(events("i", min_size=1), events("a"), st.data())
def test_refolding_any_event_of_either_person_after_a_merge_changes_nothing(into_events, absorbed_events, data):
    merged = merge(run(into_events), run(absorbed_events))
    assert ProfileState.from_json(merged.to_json()) == merged
    for event in data.draw(st.lists(st.sampled_from(into_events + absorbed_events), min_size=1, max_size=4)):
        assert fold(merged, event) == merged


@examples
@given(events())
def test_merging_a_person_with_itself_changes_nothing(evs):
    state = run(evs)
    assert merge(state, state) == state


@examples
@given(events("s"), events("b"), st.data())
def test_folding_a_whole_batch_at_once_equals_folding_event_by_event(earlier, batch, data):
    """The projector folds a batch with fold_all; it must be exactly the per-event fold, from any state."""
    state = run(earlier)
    batch = batch + data.draw(st.lists(st.sampled_from(batch), max_size=3)) if batch else batch  # redeliveries too
    assert fold_all(state, batch) == run(batch, state)
