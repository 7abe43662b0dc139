"""The per-event rules: validation that names the field, clock-skew correction, bounds, and the raw event written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ingest.normalize import FUTURE_TOLERANCE, Edge, Rejected, event_time, normalize, normalize_all
from schemas.events import RawEvent
from schemas.tracking import MAX_EVENT_BYTES, MAX_NESTING_DEPTH, MAX_STRING_LENGTH, BatchEnvelope

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EDGE = Edge(source_id="web", received_at=RECEIVED, ip="198.51.100.0", user_agent="curl/8")


def raw(call: dict, inherited: BatchEnvelope | None = None) -> RawEvent:
    normalized = normalize(call, EDGE, inherited) if inherited else normalize(call, EDGE)
    return RawEvent.model_validate_json(normalized.value)


def problems(call) -> list[tuple[str, str]]:
    with pytest.raises(Rejected) as caught:
        normalize(call, EDGE)
    return [(p.field, p.reason) for p in caught.value.problems]


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# -- clock skew ---------------------------------------------------------------------------------------------


def test_a_skewed_client_clock_is_corrected_by_the_sent_at_difference():
    client_clock_behind = timedelta(hours=-2)
    happened = RECEIVED - timedelta(seconds=10) + client_clock_behind
    timestamp, flags = event_time(happened, RECEIVED + client_clock_behind, RECEIVED)
    assert (timestamp, flags) == (RECEIVED - timedelta(seconds=10), [])


def test_without_sent_at_the_client_time_is_taken_as_is():
    happened = RECEIVED - timedelta(days=3)  # e.g. a historical import from a server library
    assert event_time(happened, None, RECEIVED) == (happened, [])


def test_without_any_client_time_the_receive_time_is_the_event_time():
    assert event_time(None, None, RECEIVED) == (RECEIVED, [])


def test_far_future_times_are_clamped_and_flagged():
    assert event_time(RECEIVED + FUTURE_TOLERANCE * 2, None, RECEIVED) == (RECEIVED, ["future_timestamp_clamped"])
    slightly_ahead = RECEIVED + FUTURE_TOLERANCE / 2
    assert event_time(slightly_ahead, None, RECEIVED) == (slightly_ahead, [])


def test_a_correction_out_of_datetime_range_is_flagged_not_raised():
    low, high = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)
    assert event_time(high, low, RECEIVED) == (RECEIVED, ["timestamp_out_of_range"])


def test_the_raw_event_carries_corrected_and_original_times():
    event = raw(
        {"type": "track", "event": "E", "anonymousId": "a", "originalTimestamp": "2026-03-01T09:59:00Z", "sentAt": "2026-03-01T10:00:00Z"}
    )
    assert event.timestamp == RECEIVED - timedelta(minutes=1)
    assert event.original_timestamp == datetime(2026, 3, 1, 9, 59, tzinfo=UTC)
    assert event.sent_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert event.received_at == RECEIVED


def test_a_batch_sent_at_applies_to_calls_that_have_none():
    envelope = BatchEnvelope(batch=[], sentAt="2026-03-01T10:00:00Z")
    event = raw({"type": "track", "event": "E", "anonymousId": "a", "timestamp": "2026-03-01T09:59:30Z"}, envelope)
    assert event.timestamp == RECEIVED - timedelta(seconds=30)


# -- the rules of each call ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"event": "E", "anonymousId": "a"}, "type"),
        ({"type": "purchase", "anonymousId": "a"}, "type"),
        ({"type": "track", "event": "E"}, "userId or anonymousId"),
        ({"type": "track", "anonymousId": "a"}, "event"),
        ({"type": "track", "anonymousId": "a", "event": ""}, "event"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "alias", "previousId": "p"}, "userId"),
        ({"type": "group", "userId": "u"}, "groupId"),
        ({"type": "identify", "userId": "u", "messageId": "m" * 101}, "messageId"),
        ({"type": "identify", "userId": "u", "messageId": ""}, "messageId"),
        ({"type": "identify", "userId": True}, "userId"),
        ({"type": "identify", "userId": "u" * 101}, "userId"),
        ({"type": "page", "userId": "u", "name": "n" * 1001}, "name"),
        ({"type": "identify", "userId": "u", "timestamp": "2026-03-01T10:00:00"}, "timestamp"),
        ({"type": "identify", "userId": "u", "sentAt": "yesterday"}, "sentAt"),
        ({"type": "identify", "userId": "u", "traits": ["not", "an", "object"]}, "traits"),
        ({"type": "track", "userId": "u", "event": "E", "context": "nope"}, "context"),
    ],
)
def test_each_rule_names_its_field(call, field):
    assert field in [name for name, _ in problems(call)]


def test_a_call_that_is_not_an_object_is_refused():
    assert problems(["track"]) == [("event", "expected a JSON object, got list")]


@pytest.mark.parametrize("call_type", ["track", "identify", "page", "screen", "group", "alias"])
def test_a_minimal_call_of_each_type_is_accepted(call_type):
    call = {"type": call_type, "userId": "u", "event": "E", "groupId": "g", "previousId": "p"}
    assert raw(call).type == call_type


def test_numeric_ids_become_strings():
    event = raw(orjson.loads(b'{"type": "group", "userId": 42, "anonymousId": 18446744073709551615, "groupId": -9223372036854775808}'))
    assert (event.user_id, event.anonymous_id, event.group_id) == ("42", "18446744073709551615", "-9223372036854775808")


@pytest.mark.parametrize("field", ["messageId", "anonymousId", "userId", "previousId", "groupId"])
@pytest.mark.parametrize("number", [b"1180591620717411303424", b"18446744073709551616", b"-9223372036854775809", b"7.5", b"42.0", b"1e3"])
def test_a_number_id_that_is_not_a_64_bit_integer_is_refused(field, number):
    """orjson reads integers past 64 bits as floats: 2**70 and 2**70 + 1 would both be "1.1805916207174113e+21"."""
    call = orjson.loads(
        b'{"type": "group", "userId": "u", "anonymousId": "a", "groupId": "g", "previousId": "p", "%s": %s}' % (field.encode(), number)
    )
    assert problems(call) == [(field, "a number id must be an integer within 64 bits; send it as a string")]


def test_a_float_id_is_refused_even_when_python_hands_it_over():
    for value in (float("inf"), float("nan"), 1.0):
        assert problems({"type": "identify", "userId": value}) == [
            ("userId", "a number id must be an integer within 64 bits; send it as a string")
        ]


def test_a_missing_message_id_is_generated_and_a_given_one_kept():
    assert uuid.UUID(raw({"type": "identify", "userId": "u"}).message_id)
    assert raw({"type": "identify", "userId": "u", "messageId": "m-1"}).message_id == "m-1"


def test_the_kafka_key_is_the_anonymous_id_else_the_user_id():
    assert normalize({"type": "identify", "userId": "u", "anonymousId": "a"}, EDGE).device_key == "a"
    assert normalize({"type": "identify", "userId": "u"}, EDGE).device_key == "u"
    assert normalize({"type": "identify", "userId": "u", "anonymousId": ""}, EDGE).device_key == "u"
    assert normalize({"type": "alias", "userId": "u", "previousId": "p"}, EDGE).device_key == "u"


# -- placeholder ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["undefined", "null", "anonymous", "[object Object]", "0", " NULL ", '"undefined"', 0, -1])
def test_a_placeholder_anonymous_id_is_dropped_flagged_and_the_user_id_is_the_key(placeholder):
    normalized = normalize({"type": "track", "event": "E", "anonymousId": placeholder, "userId": "u-1"}, EDGE)
    event = RawEvent.model_validate_json(normalized.value)
    assert (normalized.device_key, event.anonymous_id, event.user_id, event.flags) == ("u-1", None, "u-1", ["placeholder_anonymous_id"])
    assert (event.device_key, event.distinct_id) == ("u-1", "u-1")
    assert orjson.dumps(str(placeholder)) not in normalized.value  # written nowhere


def test_the_placeholder_flag_comes_after_the_clock_flags():
    event = raw({"type": "track", "event": "E", "anonymousId": "undefined", "userId": "u", "timestamp": "2999-01-01T00:00:00Z"})
    assert event.flags == ["future_timestamp_clamped", "placeholder_anonymous_id"]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"anonymousId": "undefined"}, [("anonymousId", "a placeholder, not an id")]),
        (
            {"anonymousId": "null", "userId": "undefined"},
            [("anonymousId", "a placeholder, not an id"), ("userId", "a placeholder, not an id")],
        ),
        ({"anonymousId": "", "userId": "[object Object]"}, [("userId", "a placeholder, not an id")]),
        ({"userId": "anonymous"}, [("userId", "a placeholder, not an id")]),
        ({"anonymousId": 0}, [("anonymousId", "a placeholder, not an id")]),
    ],
)
def test_a_call_without_a_usable_id_is_refused_naming_each_placeholder(ids, expected):
    assert problems({"type": "track", "event": "E", **ids}) == expected


def test_an_alias_to_a_placeholder_user_id_has_no_key_and_is_refused():
    assert problems({"type": "alias", "previousId": "anon-1", "userId": "undefined"}) == [("userId", "a placeholder, not an id")]


def test_a_placeholder_user_id_beside_a_usable_anonymous_id_is_kept_for_the_identity_resolver():
    normalized = normalize({"type": "identify", "anonymousId": "a-1", "userId": "undefined"}, EDGE)
    event = RawEvent.model_validate_json(normalized.value)
    assert (normalized.device_key, event.anonymous_id, event.user_id, event.flags) == ("a-1", "a-1", "undefined", [])
    assert event.distinct_id == "a-1"  # schemas.events skips a placeholder user id


# -- hashed emails ----------------------------------------------------------------------------------------------


def test_a_source_that_hashes_emails_writes_no_address_and_no_address_as_the_key():
    from dataclasses import replace

    from ingest.privacy import hash_email

    hashing = replace(EDGE, hash_emails=True)
    call = {
        "type": "identify",
        "userId": "Ann@Example.com",
        "traits": {"email": "ann@example.com", "plan": "pro"},
        "context": {"traits": {"email": " ANN@example.com"}, "page": {"url": "https://x.example/?e=1"}},
        "properties": {"email": "ann@example.com"},
    }
    normalized = normalize(call, hashing)
    event = RawEvent.model_validate_json(normalized.value)
    hashed = hash_email("ann@example.com")
    assert b"@" not in normalized.value.replace(b"https://x.example", b"")
    assert (normalized.device_key, event.user_id, event.traits, event.context["traits"], event.properties) == (
        hashed,
        hashed,
        {"email": hashed, "plan": "pro"},
        {"email": hashed},
        {"email": hashed},
    )
    assert RawEvent.model_validate_json(normalize(call, EDGE).value).traits["email"] == "ann@example.com"  # other sources: untouched
    assert call["traits"]["email"] == "ann@example.com"  # the call itself is not changed (it may become a bad row)


# -- bounds ---------------------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_accepted_and_one_deeper_is_not():
    assert raw({"type": "track", "event": "E", "userId": "u", "properties": nested(MAX_NESTING_DEPTH)})
    [(field, reason)] = problems({"type": "track", "event": "E", "userId": "u", "properties": nested(MAX_NESTING_DEPTH + 1)})
    assert field.startswith("properties.a.a") and "nested deeper" in reason


def test_nesting_deeper_than_json_writers_allow_is_refused_with_the_field():
    [(field, _)] = problems({"type": "identify", "userId": "u", "traits": {"t": nested(400)}})
    assert field.startswith("traits.t.a")


def test_long_strings_and_keys_name_their_path():
    [(field, reason)] = problems(
        {"type": "track", "event": "E", "userId": "u", "context": {"page": {"url": "x" * (MAX_STRING_LENGTH + 1)}}}
    )
    assert (field, "string longer" in reason) == ("context.page.url", True)
    [(field, reason)] = problems({"type": "track", "event": "E", "userId": "u", "properties": {"k" * (MAX_STRING_LENGTH + 1): 1}})
    assert (field, "key longer" in reason) == ("properties", True)


def test_an_event_over_the_size_limit_is_refused():
    many = {f"p{i}": "x" * 1000 for i in range(MAX_EVENT_BYTES // 1000 + 1)}
    [(field, reason)] = problems({"type": "track", "event": "E", "userId": "u", "properties": many})
    assert field == "event" and f"limit is {MAX_EVENT_BYTES}" in reason


# -- the raw event --------------------------------------------------------------------------------------------


def test_the_raw_event_is_the_contract_the_processors_read():
    call = {
        "type": "page",
        "name": "Pricing",
        "anonymousId": "a",
        "userId": "u",
        "messageId": "m",
        "properties": {"url": "https://example.com/pricing", "n": 1.5, "list": [1, None, True]},
        "context": {"locale": "de-DE"},
        "integrations": {"All": False},
    }
    normalized = normalize(call, EDGE)
    assert RawEvent.model_validate_json(normalized.value) == RawEvent(
        message_id="m",
        type="page",
        event="Pricing",
        anonymous_id="a",
        user_id="u",
        timestamp=RECEIVED,
        received_at=RECEIVED,
        properties=call["properties"],
        context={"locale": "de-DE"},
        source_id="web",
        ip="198.51.100.0",
        user_agent="curl/8",
    )
    assert (normalized.device_key, normalized.type) == ("a", "page")


def test_batch_context_is_merged_under_each_calls_own():
    envelope = BatchEnvelope(batch=[], context={"library": {"name": "batcher"}, "locale": "en-US"})
    event = raw({"type": "identify", "userId": "u", "context": {"locale": "fr-FR", "userAgent": "Mozilla/5.0"}}, envelope)
    assert event.context == {"library": {"name": "batcher"}, "locale": "fr-FR", "userAgent": "Mozilla/5.0"}
    assert event.user_agent == "Mozilla/5.0"  # the browser's own, over the request's header


def test_traits_come_from_context_when_the_call_has_none():
    assert raw({"type": "track", "event": "E", "userId": "u", "context": {"traits": {"plan": "pro"}}}).traits == {"plan": "pro"}


def test_a_batch_accepts_valid_calls_and_rejects_invalid_ones_one_by_one():
    calls = [{"type": "track", "event": "E", "userId": "u"}, {"type": "track", "userId": "u"}, 3, {"type": "identify", "userId": "v"}]
    outcome = normalize_all(calls, EDGE)
    assert [event.device_key for event in outcome.accepted] == ["u", "v"]
    assert [(index, [p.field for p in found]) for index, _call, found in outcome.rejected] == [(1, ["event"]), (2, ["event"])]
    assert outcome.device_counts() == {"u": 1, "v": 1}
    assert orjson.loads(outcome.accepted[0].value)["source_id"] == "web"
