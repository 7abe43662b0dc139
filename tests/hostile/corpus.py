"""The collector's hostile-input corpus: named requests, each with the answer the collector owes it.

Kept as data (`CORPUS`, a list of `Case`), generated where a rule covers many inputs (a wrong type for
every field of every call type, every placeholder id), so the count is honest. Every refused case expects
a 4xx and a JSON error whose field or reason names the problem (the pixel answers a GIF: its reason is
read from the bad row it writes). The cases the collector accepts by design (a far-future timestamp is
clamped and flagged, a placeholder anonymousId is dropped and flagged when a userId can key the event, ...) say so
(`by_design`), expect 200 and what lands on the raw topic, and are counted apart.

What each request leaves on the dead-letter topic (`bad_rows`), as ingest/tracking.py does it:
- a body that cannot be read (content type or encoding, size, gzip, JSON, a batch envelope that is not
  one): one bad row without an index, even before the write key is known (source_id None);
- each refused call, alone or in a batch: one bad row with its index and the source's id;
- nothing for whole-request refusals that are about the sender, not the data: 401/403 (write key),
  429, 404/405 (path, method);
- one `auth` bad row without an index for a valid source's call from an origin it does not list (403).
A row is `marked` when its payload carries the case's marker ("~<name>~"), so the test can tell whose it is;
compressed, empty and unwritable (too deeply nested) payloads cannot carry it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import orjson

from schemas.identity import ILLEGAL_IDS
from schemas.tracking import CALL_TYPES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, TrackingCall

WRITE_KEY = "wk-hostile"
DISABLED_KEY = "wk-hostile-disabled"
SHOP_KEY = "wk-hostile-shop"
SHOP_ORIGIN = "https://shop.example"
SOURCES = [
    {"id": "hostile", "write_key": WRITE_KEY},
    {"id": "hostile-off", "write_key": DISABLED_KEY, "enabled": False},
    {"id": "hostile-shop", "write_key": SHOP_KEY, "allowed_origins": [SHOP_ORIGIN]},
]
JSON_WITH_KEY = (("content-type", "application/json"), ("x-write-key", WRITE_KEY))
JSON_NO_KEY = (("content-type", "application/json"),)
MB = 1 << 20


class Row(NamedTuple):
    """A bad row the request writes: its batch index (None: the whole body), a word its problem names,
    and whether its payload carries the case's marker."""

    index: int | None
    word: str
    marked: bool = True


class Raw(NamedTuple):
    """Raw events the request writes: the fields that find them (and are checked), how many, and a flag."""

    match: tuple[tuple[str, Any], ...]
    count: int = 1
    flag: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the class of hostile input
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = JSON_WITH_KEY
    method: str = "POST"
    status: int = 400
    word: str = ""  # the answer's errors (or the bad rows, for a GIF) name this: a field, or a word of the reason
    rejected: tuple[int, ...] = ()  # a batch answered 200: the calls refused one by one
    bad_rows: tuple[Row, ...] = ()
    raw: tuple[Raw, ...] = ()
    by_design: bool = False  # hostile, but accepted on purpose (see note)
    chunked: bool = False  # sent without Content-Length
    note: str = ""

    @property
    def marker(self) -> str:
        return marker(self.name)


def marker(name: str) -> str:
    return f"~{name}~"


def message_id(name: str) -> str:
    return f"hostile-{name}"[:100]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def with_token(value: Any, token: bytes) -> bytes:
    """JSON of `value` with the string "@TOKEN@" replaced by raw bytes (tokens JSON cannot carry)."""
    return dumps(value).replace(b'"@TOKEN@"', token)


def valid(call_type: str, name: str, /, **fields: Any) -> dict[str, Any]:
    """A valid call of `call_type` whose every field is set, marked first (so truncation keeps the marker)."""
    call = {
        "hostileCase": marker(name),
        "type": call_type,
        "messageId": message_id(name),
        "anonymousId": f"anon-{name}"[:100],
        "userId": f"user-{name}"[:100],
        "previousId": f"prev-{name}"[:100],
        "groupId": "group-1",
        "event": "Hostile Input",
        "name": "Home",
        "category": "Docs",
        "properties": {"plan": "pro"},
        "traits": {"plan": "pro"},
        "context": {"locale": "en"},
        "integrations": {},
        "timestamp": "2026-03-01T12:00:00Z",
    }
    for key, value in fields.items():
        if value is DROP:
            call.pop(key, None)
        else:
            call[key] = value
    return call


DROP = object()


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]", leaf: bytes = b"1") -> bytes:
    return open_ * depth + leaf + close * depth


def nested_value(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# -- the builders: one per way the collector answers ------------------------------------------------------


def one_call(
    name: str, kind: str, call: Any, word: str, *, call_type: str = "track", marked: bool = True, body: bytes | None = None, note: str = ""
) -> Case:
    """One call on /v1/<type>, refused: 400 naming the field, kept as bad row 0."""
    return Case(
        name, kind, f"/v1/{call_type}", dumps(call) if body is None else body, word=word, bad_rows=(Row(0, word, marked),), note=note
    )


def in_batch(name: str, kind: str, bad: list[tuple[Any, str, bool]], note: str = "") -> Case:
    """A batch with a valid call first and the bad ones after: 200, the valid one written, each bad one
    refused on its own (the answer's `rejected`) and kept as a bad row with its index."""
    good = valid("track", name)
    body = {"hostileCase": marker(name), "batch": [good, *[item for item, _, _ in bad]]}
    rows = tuple(Row(index, word, marked) for index, (_, word, marked) in enumerate(bad, start=1))
    return Case(
        name,
        kind,
        "/v1/batch",
        dumps(body),
        status=200,
        word=bad[0][1],
        rejected=tuple(range(1, len(bad) + 1)),
        bad_rows=rows,
        raw=(Raw((("message_id", message_id(name)),)),),
        note=note,
    )


def all_refused(name: str, kind: str, items: list[Any], word: str, marked: bool = True) -> Case:
    """A batch whose every call is refused: 400 ("batch": every call was rejected), each kept with its index."""
    body = {"hostileCase": marker(name), "batch": items}
    return Case(name, kind, "/v1/batch", dumps(body), word=word, bad_rows=tuple(Row(i, word, marked) for i in range(len(items))))


def whole_body(
    name: str,
    kind: str,
    body: bytes,
    status: int,
    word: str,
    *,
    row_word: str = "body",
    marked: bool = True,
    path: str = "/v1/batch",
    headers: tuple[tuple[str, str], ...] = JSON_WITH_KEY,
    chunked: bool = False,
    note: str = "",
) -> Case:
    """A body refused before any call is read: one bad row without an index."""
    return Case(
        name, kind, path, body, headers, status=status, word=word, bad_rows=(Row(None, row_word, marked),), chunked=chunked, note=note
    )


def sender_refused(
    name: str,
    kind: str,
    path: str,
    status: int,
    word: str,
    *,
    body: bytes | None = None,
    method: str = "POST",
    headers: tuple[tuple[str, str], ...] = JSON_NO_KEY,
    note: str = "",
) -> Case:
    """Refused for who sent it or where (key, origin, path, method): nothing is written anywhere."""
    body = dumps(valid("track", name)) if body is None else body
    return Case(name, kind, path, body, headers, method=method, status=status, word=word, note=note)


def by_design(
    name: str, kind: str, call: Any, raw: tuple[Raw, ...], note: str, *, path: str = "/v1/track", body: bytes | None = None
) -> Case:
    return Case(name, kind, path, dumps(call) if body is None else body, status=200, raw=raw, by_design=True, note=note)


# -- gzip ---------------------------------------------------------------------------------------------------


@functools.cache
def gzip_of_repeats(byte: bytes, megabytes: int) -> bytes:
    """A valid gzip of `megabytes` MB of one byte, built in well under a second: after a full flush deflate
    starts afresh, so every 1 MB block compresses to the same bytes, and only the CRC needs the whole input."""
    chunk = byte * MB
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "deflate did not restart after a full flush"
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * megabytes + deflate.flush(zlib.Z_FINISH) + struct.pack("<II", crc, (megabytes * MB) & 0xFFFFFFFF)


# -- the classes ---------------------------------------------------------------------------------------------


def invalid_json() -> list[Case]:
    head = b'{"hostileCase":"%s","type":"track","anonymousId":"a","event":"E"'
    bodies = {
        "truncated": b',"properties":{"a":',
        "trailing-comma": b",}",
        "single-quotes": b",'properties':{}}",
        "unquoted-key": b",properties:{}}",
        "comment": b"/* comment */}",
        "two-documents": b"} {}",
        "trailing-garbage": b"}garbage",
        "leading-zero": b',"properties":{"n":01}}',
        "hex-number": b',"properties":{"n":0x10}}',
        "bare-decimal-point": b',"properties":{"n":.5}}',
        "bad-exponent": b',"properties":{"n":1e}}',
        "control-char": b',"event":"a\x01b"}',
        "raw-tab-in-string": b',"event":"a\tb"}',
        "raw-nul-in-string": b',"event":"a\x00b"}',
        "bad-escape": b',"event":"\\x41"}',
        "unterminated-string": b',"event":"abc}',
        "missing-colon": b',"event" "E"}',
        "missing-comma": b' "userId":"u"}',
        "unclosed-array": b',"properties":{"a":[1,2}}',
    }
    cases = []
    for index, (label, tail) in enumerate(bodies.items()):
        name = f"json-{label}"
        path = ("/v1/track", "/v1/batch", "/b", "/v1/t")[index % 4]
        cases.append(whole_body(name, "invalid-json", (head % marker(name).encode()) + tail, 400, "JSON", path=path))
    for label, body in {"empty": b"", "whitespace": b" \n\t ", "undefined": b"undefined", "nul-bytes": b"\x00" * 16}.items():
        word = "empty" if not body.strip() else "JSON"
        cases.append(whole_body(f"json-body-{label}", "invalid-json", body, 400, word, path="/v1/track", marked=False))
    # JSON, but not a call: a single route refuses the value as a call (bad row 0); a batch route refuses the envelope.
    for label, value, got in [
        ("array", [1, 2], "list"),
        ("string", "~json-top-string~", "str"),
        ("number", 42, "int"),
        ("null", None, "NoneType"),
        ("true", True, "bool"),
    ]:
        marked = label == "string"
        cases.append(one_call(f"json-top-{label}", "invalid-json", value, got, marked=marked))
    for label, value in [("array", ["~json-batch-top-array~"]), ("string", "~json-batch-top-string~"), ("number", 7)]:
        name = f"json-batch-top-{label}"
        cases.append(whole_body(name, "invalid-json", dumps(value), 400, "batch", marked=label != "number"))
    for label, body in {
        "batch-null": {"batch": None},
        "batch-object": {"batch": {"a": 1}},
        "batch-string": {"batch": "x"},
        "batch-missing": {"calls": []},
    }.items():
        name = f"json-{label}"
        cases.append(whole_body(name, "invalid-json", dumps({"hostileCase": marker(name), **body}), 400, "batch", row_word="batch"))
    return cases


def invalid_utf8() -> list[Case]:
    head = b'{"hostileCase":"%s","type":"track","anonymousId":"a","event":"'
    bodies = {
        "ff-byte": b'\xff"}',
        "overlong-slash": b'\xc0\xaf"}',
        "utf16-surrogate-encoded": b'\xed\xa0\x80"}',
        "lone-continuation": b'\x80"}',
        "truncated-sequence": b'\xe2\x82"}',
        "beyond-u10ffff": b'\xf4\x90\x80\x80"}',
        "latin1-e-acute": '\xe9"}'.encode("latin-1"),
    }
    cases = [
        whole_body(f"utf8-{label}", "invalid-utf8", (head % marker(f"utf8-{label}").encode()) + tail, 400, "UTF-8")
        for label, tail in bodies.items()
    ]
    name = "utf8-in-key"
    cases.append(
        whole_body(name, "invalid-utf8", b'{"hostileCase":"%s","type":"track","\xfe\xfe":1}' % marker(name).encode(), 400, "UTF-8")
    )
    for label, escape, word in [
        ("lone-high-surrogate-escape", b"\\ud800", "surrogate"),
        ("lone-low-surrogate-escape", b"\\udc00", "surrogate"),
    ]:
        name = f"utf8-{label}"
        cases.append(whole_body(name, "invalid-utf8", (head % marker(name).encode()) + escape + b'"}', 400, word))
    name = "utf8-bom"
    cases.append(whole_body(name, "invalid-utf8", b"\xef\xbb\xbf" + dumps(valid("track", name)), 400, "BOM"))
    cases.append(
        whole_body(
            "utf8-utf16-body",
            "invalid-utf8",
            dumps(valid("track", "utf8-utf16-body")).decode().encode("utf-16"),
            400,
            "UTF-8",
            marked=False,
        )
    )
    name = "utf8-latin1-declared"
    body = dumps(valid("track", name, event="@E@")).replace(b"@E@", "Caf\xe9".encode("latin-1"))
    cases.append(
        whole_body(
            name,
            "invalid-utf8",
            body,
            400,
            "UTF-8",
            headers=(("content-type", "application/json; charset=iso-8859-1"), ("x-write-key", WRITE_KEY)),
            note="a declared charset is ignored: the body must be UTF-8",
        )
    )
    return cases


# The wrong values for each kind of field: every one of them is refused, naming the field.
STRING_FIELDS = ("messageId", "anonymousId", "userId", "previousId", "groupId", "event", "name", "category")
PAYLOAD_FIELDS = ("properties", "traits", "context", "integrations")
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
WRONG_VALUES: dict[str, dict[str, Any]] = {
    "string": {"bool": True, "array": [1, "x"], "object": {"nested": 1}},
    "payload": {"bool": False, "array": [{"a": 1}], "string": "plan=pro", "number": 42, "null": None},
    "time": {"bool": True, "array": ["2026-03-01T12:00:00Z"], "object": {"seconds": 1}, "string": "yesterday"},
}
assert {*STRING_FIELDS, *PAYLOAD_FIELDS, *TIME_FIELDS, "type"} == set(TrackingCall.model_fields), (
    "a field of TrackingCall has no wrong-type cases"
)


def wrong_types() -> list[Case]:
    cases = []
    for call_type in CALL_TYPES:
        for fields, values in [
            (STRING_FIELDS, WRONG_VALUES["string"]),
            (PAYLOAD_FIELDS, WRONG_VALUES["payload"]),
            (TIME_FIELDS, WRONG_VALUES["time"]),
        ]:
            for field in fields:
                for label, value in values.items():
                    name = f"type-{call_type}-{field}-{label}"
                    cases.append(one_call(name, "wrong-type", valid(call_type, name, **{field: value}), field, call_type=call_type))
    # The single routes name the type themselves; a batch's calls carry it.
    for label, value in {"bool": True, "array": ["track"], "object": {"t": 1}, "number": 1, "null": None}.items():
        name = f"type-batch-type-{label}"
        cases.append(all_refused(name, "wrong-type", [valid("track", name, type=value)], "type"))
    # Numbers where strings are expected are taken: SDKs send numeric ids (42 and "42" are one user).
    for field, value, stored_as in [("userId", 42, ("user_id", "42")), ("event", 7, ("event", "7")), ("name", 7.5, ("event", "7.5"))]:
        name = f"type-number-{field}"
        call_type = "page" if field == "name" else "track"
        cases.append(
            by_design(
                name,
                "wrong-type",
                valid(call_type, name, **{field: value}),
                (Raw((("message_id", message_id(name)), stored_as)),),
                "numbers are coerced to strings (coerce_numbers_to_str)",
                path=f"/v1/{call_type}",
            )
        )
    # ... but an id that is a number must be an integer: 3.5 is no id.
    for field in ("anonymousId", "userId", "messageId", "previousId", "groupId"):
        name = f"type-fraction-{field}"
        cases.append(one_call(name, "wrong-type", valid("track", name, **{field: 3.5}), f"{field} a number id must be an integer"))
    name = "type-unix-timestamp"
    cases.append(
        by_design(
            name,
            "wrong-type",
            valid("track", name, timestamp=1_700_000_000),
            (Raw((("message_id", message_id(name)), ("timestamp", "2023-11-14T22:13:20+00:00"))),),
            "a number is a unix time",
        )
    )
    return cases


def nan_and_infinity() -> list[Case]:
    cases = []
    for label, token in {
        "NaN": b"NaN",
        "Infinity": b"Infinity",
        "minus-Infinity": b"-Infinity",
        "plus-Infinity": b"+Infinity",
        "nan-lower": b"nan",
        "inf-lower": b"inf",
        "minus-NaN": b"-NaN",
    }.items():
        name = f"nan-{label}-property"
        cases.append(
            whole_body(
                name, "nan-infinity", with_token(valid("track", name, properties={"x": "@TOKEN@"}), token), 400, "JSON", path="/v1/track"
            )
        )
    for field in ("timestamp", "userId", "messageId"):
        name = f"nan-NaN-{field}"
        cases.append(
            whole_body(name, "nan-infinity", with_token(valid("track", name, **{field: "@TOKEN@"}), b"NaN"), 400, "JSON", path="/v1/track")
        )
    name = "nan-Infinity-in-batch"
    cases.append(
        whole_body(
            name,
            "nan-infinity",
            with_token({"hostileCase": marker(name), "batch": [valid("track", name, properties={"x": "@TOKEN@"})]}, b"Infinity"),
            400,
            "JSON",
        )
    )
    cases.append(whole_body("nan-top-level", "nan-infinity", b"NaN", 400, "JSON", path="/v1/track", marked=False))
    return cases


def enormous_numbers() -> list[Case]:
    cases = []
    for label, token in {
        "1e400": b"1e400",
        "minus-1e400": b"-1e400",
        "1e999999999": b"1e999999999",
        "10000-digit-int": b"9" * 10_000,
        "minus-10000-digit-int": b"-" + b"9" * 10_000,
        "400-digit-int": b"1" + b"0" * 400,
    }.items():
        name = f"number-{label}-property"
        cases.append(
            whole_body(
                name,
                "enormous-number",
                with_token(valid("track", name, properties={"n": "@TOKEN@"}), token),
                400,
                "infinity",
                path="/v1/track",
            )
        )
    for field, token in [("timestamp", b"1e400"), ("userId", b"9" * 10_000), ("sentAt", b"-1e400")]:
        name = f"number-huge-{field}"
        cases.append(
            whole_body(
                name, "enormous-number", with_token(valid("track", name, **{field: "@TOKEN@"}), token), 400, "infinity", path="/v1/track"
            )
        )
    for label, value in {"1e20": 1e20, "1e308": 1e308, "minus-1e20": -1e20}.items():
        name = f"number-timestamp-{label}"
        cases.append(one_call(name, "enormous-number", valid("track", name, timestamp=value), "timestamp"))
    # Integers past 64 bits: orjson reads them as floats. A property is taken, rounded (see the note); an id is
    # refused, since rounded ids collide (2**70 and 2**70 + 1 would be one user).
    lossy = "orjson reads integers past 64 bits as floats: a property's value is taken, rounded"
    name = "number-2-pow-70-property"
    cases.append(
        by_design(
            name,
            "enormous-number",
            None,
            (Raw((("message_id", message_id(name)), ("properties", {"n": float(2**70)}))),),
            lossy,
            body=with_token(valid("track", name, properties={"n": "@TOKEN@"}), str(2**70).encode()),
        )
    )
    for field, number in [
        ("userId", 2**70),
        ("userId", 2**70 + 1),
        ("anonymousId", 2**64),
        ("messageId", 2**70),
        ("previousId", -(2**63) - 1),
        ("groupId", 2**64),
    ]:
        name = f"number-{number}-{field}"
        cases.append(
            one_call(
                name,
                "enormous-number",
                None,
                f"{field} a number id must be an integer",
                body=with_token(valid("track", name, **{field: "@TOKEN@"}), str(number).encode()),
            )
        )
    # Integers that fit in 64 bits (signed or unsigned) are ids, exactly.
    for field, stored, number in [
        ("userId", "user_id", 2**64 - 1),
        ("anonymousId", "anonymous_id", -(2**63)),
        ("groupId", "group_id", 2**63),
    ]:
        name = f"number-{number}-{field}"
        cases.append(
            by_design(
                name,
                "enormous-number",
                None,
                (Raw((("message_id", message_id(name)), (stored, str(number)))),),
                "an integer within 64 bits is an id, kept exactly as a string",
                body=with_token(valid("track", name, **{field: "@TOKEN@"}), str(number).encode()),
            )
        )
    name = "number-1e-400"
    cases.append(
        by_design(
            name,
            "enormous-number",
            None,
            (Raw((("message_id", message_id(name)), ("properties", {"n": 0.0}))),),
            "underflow reads as 0.0",
            body=with_token(valid("track", name, properties={"n": "@TOKEN@"}), b"1e-400"),
        )
    )
    return cases


def over_limits() -> list[Case]:
    cases = []
    for field in ("messageId", "anonymousId", "userId", "previousId", "groupId"):
        name = f"long-{field}"
        cases.append(one_call(name, "over-limit", valid("track", name, **{field: "x" * 101}), field))
    for field in ("event", "name", "category"):
        name = f"long-{field}"
        cases.append(one_call(name, "over-limit", valid("track", name, **{field: "x" * 1001}), field))
    for field in ("properties", "traits", "context"):
        name = f"long-string-in-{field}"
        cases.append(
            one_call(name, "over-limit", valid("identify", name, **{field: {"s": "x" * 8193}}), "longer than 8192", call_type="identify")
        )
        name = f"long-key-in-{field}"
        cases.append(
            one_call(name, "over-limit", valid("identify", name, **{field: {"k" * 8193: 1}}), "longer than 8192", call_type="identify")
        )
    limit = str(MAX_EVENT_BYTES)
    for label, call_type, field in [("track", "track", "properties"), ("identify", "identify", "traits"), ("page", "page", "context")]:
        name = f"event-over-32KB-{label}"
        big = {f"k{i}": "x" * 7_000 for i in range(5)}  # every string within its limit, the event not
        cases.append(one_call(name, "over-limit", valid(call_type, name, **{field: big}), limit, call_type=call_type))
    name = "event-100KB-one-string"
    cases.append(one_call(name, "over-limit", valid("track", name, properties={"s": "x" * 100_000}), limit))
    name = "over-limit-in-batch"
    big = {f"k{i}": "x" * 7_000 for i in range(5)}
    cases.append(
        in_batch(
            name,
            "over-limit",
            [
                (valid("track", name, messageId="m" * 101), "messageId", True),
                (valid("track", name, messageId=f"{name}-2", properties=big), limit, True),
                (valid("track", name, messageId=f"{name}-3", event="e" * 1001), "event", True),
            ],
        )
    )
    return cases


def deep_nesting() -> list[Case]:
    cases = []
    head = b'{"hostileCase":"%s","type":"track","anonymousId":"a","event":"E","properties":{"x":'
    for label, deep in {
        "10000-arrays": nested(10_000),
        "10000-objects": nested(10_000, b'{"a":', b"}"),
        "1025-arrays": nested(1_025),
    }.items():
        name = f"deep-{label}-in-properties"
        cases.append(whole_body(name, "deep-nesting", (head % marker(name).encode()) + deep + b"}}", 400, "depth", path="/v1/track"))
    cases.append(whole_body("deep-10000-arrays-body", "deep-nesting", nested(10_000), 400, "depth", path="/v1/track", marked=False))
    cases.append(whole_body("deep-10000-arrays-batch", "deep-nesting", b'{"batch":' + nested(10_000) + b"}", 400, "depth", marked=False))
    # Parsed, but deeper than an event may be: refused naming the path. Past 255 levels the call cannot even
    # be written back as JSON, so its bad row keeps a note instead of the payload.
    for depth in (1_000, 300, 17):
        for field in ("properties", "traits", "context"):
            name = f"deep-{depth}-in-{field}"
            body = with_token(valid("identify", name, **{field: {"x": "@TOKEN@"}}), nested(depth, leaf=b'"leaf"'))
            cases.append(one_call(name, "deep-nesting", None, "nested deeper", call_type="identify", marked=depth < 255, body=body))
    name = "deep-batch-context"
    body = {
        "hostileCase": marker(name),
        "batch": [valid("track", name), valid("track", name, messageId=f"{name}-2")],
        "context": {"x": nested_value(20)},
    }
    cases.append(
        Case(
            name,
            "deep-nesting",
            "/v1/batch",
            dumps(body),
            word="nested deeper",
            bad_rows=(Row(0, "nested deeper"), Row(1, "nested deeper")),
            note="a batch's context is every call's: each call is refused",
        )
    )
    name = "deep-batch-item"
    case = in_batch(
        name,
        "deep-nesting",
        [
            ("@TOKEN@", "expected a JSON object", False),
            (valid("track", name, messageId=f"{name}-2", properties={"x": nested_value(17)}), "nested deeper", True),
        ],
    )
    cases.append(replace(case, body=case.body.replace(b'"@TOKEN@"', nested(1_000, leaf=b'"leaf"'))))
    name = "deep-integrations"
    cases.append(
        by_design(
            name,
            "deep-nesting",
            valid("track", name, integrations={"x": nested_value(40)}),
            (Raw((("message_id", message_id(name)),)),),
            "integrations are read but never written to the raw event, so their depth harms nothing",
        )
    )
    return cases


def oversized_batches() -> list[Case]:
    cases = []
    too_many = str(MAX_BATCH_EVENTS)
    for count in (MAX_BATCH_EVENTS + 1, 10_000):
        name = f"batch-{count}-events"
        cases.append(
            whole_body(
                name, "oversized-batch", dumps({"hostileCase": marker(name), "batch": [{}] * count}), 413, too_many, row_word="batch"
            )
        )
    name = "batch-2501-valid-events"
    calls = [{"type": "track", "event": "E", "anonymousId": f"a{i}"} for i in range(MAX_BATCH_EVENTS + 1)]
    cases.append(whole_body(name, "oversized-batch", dumps({"hostileCase": marker(name), "batch": calls}), 413, too_many, row_word="batch"))

    def padded(name: str, size: int) -> bytes:
        body = {"hostileCase": marker(name), "batch": [valid("track", name)], "pad": ""}
        base = len(dumps(body))
        body["pad"] = "p" * (size - base)
        return dumps(body)

    name = "batch-520KB"  # past the JSON limit, within the wire limit: read, then refused
    cases.append(whole_body(name, "oversized-batch", padded(name, 520 * 1024), 413, str(MAX_BATCH_BYTES)))
    name = "batch-700KB"  # past the wire limit: refused by its Content-Length, unread
    cases.append(whole_body(name, "oversized-batch", padded(name, 700 * 1024), 413, "limit", marked=False))
    name = "batch-700KB-chunked"  # no Content-Length: read until it passes the limit
    cases.append(whole_body(name, "oversized-batch", padded(name, 700 * 1024), 413, "limit", marked=False, chunked=True))
    name = "batch-5MB-chunked"
    cases.append(whole_body(name, "oversized-batch", padded(name, 5 * MB), 413, "limit", marked=False, chunked=True))
    name = "batch-20-events-of-30KB"
    calls = [valid("track", f"{name}-{i}", properties={f"k{j}": "x" * 6_000 for j in range(5)}) for i in range(20)]
    cases.append(whole_body(name, "oversized-batch", dumps({"hostileCase": marker(name), "batch": calls}), 413, "limit", marked=False))
    name = "batch-empty"
    cases.append(by_design(name, "oversized-batch", {"batch": []}, (), "an empty batch is answered 200, accepted 0", path="/v1/batch"))
    return cases


def gzip_mismatches() -> list[Case]:
    gz = (("content-type", "application/json"), ("content-encoding", "gzip"), ("x-write-key", WRITE_KEY))
    cases = []

    def refused(
        name: str, body: bytes, status: int, word: str, *, marked: bool = False, headers=gz, chunked: bool = False, note: str = ""
    ) -> None:
        row_word = "content-encoding" if status == 415 else "body"
        cases.append(
            whole_body(name, "gzip", body, status, word, row_word=row_word, marked=marked, headers=headers, chunked=chunked, note=note)
        )

    def call(name: str) -> bytes:
        return dumps({"hostileCase": marker(name), "batch": [valid("track", name)]})

    bomb_1gb = gzip_of_repeats(b"\0", 1024)
    refused("gzip-bomb-1GB-zeros", bomb_1gb, 413, "limit", note=f"1 GB of zeros in {len(bomb_1gb)} bytes: refused by its Content-Length")
    refused("gzip-bomb-1GB-zeros-chunked", bomb_1gb, 413, "limit", chunked=True, note="read until past the wire limit")
    bomb = gzip_of_repeats(b"\0", 500)
    assert len(bomb) < MAX_BATCH_BYTES + 64 * 1024, "the 500 MB bomb must fit within the wire limit to reach the inflater"
    refused("gzip-bomb-500MB-zeros", bomb, 413, "gzip", note="within the wire limit: inflated only up to the limit, then refused")
    refused(
        "gzip-bomb-100MB-spaces", gzip_of_repeats(b" ", 100), 413, "gzip", note="whitespace is valid JSON padding: still refused by size"
    )
    refused(
        "gzip-bomb-nested",
        gzip.compress(bomb_1gb),
        413,
        "gzip",
        note="gzip of a gzip bomb: one layer is inflated, and that layer is too big",
    )
    name = "gzip-header-plain-body"
    refused(name, call(name), 400, "gzip", marked=True)
    good = gzip.compress(call("gzip-good"))
    refused("gzip-truncated", good[: len(good) // 2], 400, "truncated")
    refused("gzip-no-trailer", good[:-8], 400, "truncated")
    refused("gzip-header-only", good[:10], 400, "truncated")
    refused("gzip-zlib-wrapper", zlib.compress(call("gzip-zlib")), 400, "gzip")
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    refused("gzip-raw-deflate", raw_deflate.compress(call("gzip-raw")) + raw_deflate.flush(), 400, "gzip")
    refused("gzip-two-members", gzip.compress(call("gzip-two-a")) + gzip.compress(call("gzip-two-b")), 400, "gzip")
    refused("gzip-trailing-garbage", good + b"garbage", 400, "gzip")
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF
    refused("gzip-bad-crc", bytes(bad_crc), 400, "gzip")
    bad_length = bytearray(good)
    bad_length[-4] ^= 0xFF
    refused("gzip-bad-length", bytes(bad_length), 400, "gzip")
    bad_magic = b"\x1f\x8c" + good[2:]
    refused("gzip-bad-magic", bad_magic, 400, "gzip")
    refused("gzip-of-invalid-json", gzip.compress(b'{"batch": ['), 400, "JSON")
    refused("gzip-of-nothing", gzip.compress(b""), 400, "empty")
    refused("gzip-without-header", good, 400, "JSON", headers=JSON_WITH_KEY, note="gzip bytes sent as if plain JSON")
    for label, encoding in {
        "deflate": "deflate",
        "br": "br",
        "compress": "compress",
        "x-gzip": "x-gzip",
        "zstd": "zstd",
        "gzip-twice": "gzip, gzip",
        "identity-gzip": "identity, gzip",
    }.items():
        name = f"gzip-encoding-{label}"
        headers = (("content-type", "application/json"), ("content-encoding", encoding), ("x-write-key", WRITE_KEY))
        refused(name, call(name), 415, "content-encoding", marked=True, headers=headers)
    return cases


def ids() -> list[Case]:
    cases = []
    name = "id-none"
    cases.append(one_call(name, "ids", valid("track", name, anonymousId=DROP, userId=DROP), "userId or anonymousId"))
    name = "id-both-null"
    cases.append(one_call(name, "ids", valid("page", name, anonymousId=None, userId=None), "userId or anonymousId", call_type="page"))
    name = "id-alias-no-previousId"
    cases.append(one_call(name, "ids", valid("alias", name, previousId=DROP), "previousId", call_type="alias"))
    name = "id-alias-no-userId"
    cases.append(one_call(name, "ids", valid("alias", name, userId=DROP), "userId", call_type="alias"))
    name = "id-group-no-groupId"
    cases.append(one_call(name, "ids", valid("group", name, groupId=DROP), "groupId", call_type="group"))
    name = "id-empty-groupId"
    cases.append(one_call(name, "ids", valid("group", name, groupId=""), "groupId", call_type="group"))
    name = "id-track-no-event"
    cases.append(one_call(name, "ids", valid("track", name, event=DROP), "event"))
    name = "id-track-empty-event"
    cases.append(one_call(name, "ids", valid("track", name, event=""), "event"))
    name = "id-empty-messageId"
    cases.append(one_call(name, "ids", valid("track", name, messageId=""), "messageId"))
    name = "id-no-messageId"
    cases.append(
        by_design(
            name,
            "ids",
            valid("track", name, messageId=DROP),
            (Raw((("anonymous_id", f"anon-{name}"),)),),
            "the collector assigns a uuid4 messageId",
        )
    )
    name = "id-duplicate-messageIds-in-batch"
    body = {"hostileCase": marker(name), "batch": [valid("track", name), valid("track", name, event="Again")]}
    cases.append(
        by_design(
            name,
            "ids",
            body,
            (Raw((("message_id", message_id(name)),), count=2),),
            path="/v1/batch",
            note="both are taken: dedup by messageId (per device) is the sessionizer's job, downstream",
        )
    )
    name = "id-duplicate-json-keys"
    body = dumps(valid("track", name, event="@E@")).replace(b'"@E@"', b'"First","event":"Second"')
    cases.append(
        by_design(
            name,
            "ids",
            None,
            (Raw((("message_id", message_id(name)), ("event", "Second"))),),
            body=body,
            note="duplicate keys: the last one wins (orjson)",
        )
    )
    # The identity issue's placeholders (schemas.identity.ILLEGAL_IDS). As the Kafka key they would put every
    # such client on one partition, in one rate-limit bucket and one session: a placeholder anonymousId is
    # dropped (written nowhere, the event flagged) and the event keyed by its userId; without a usable userId
    # the call is refused. A placeholder userId beside a usable anonymousId is taken verbatim: the identity
    # resolver refuses to link it (and dead-letters a warning). "" is no id at all.
    placeholder = "a placeholder, not an id"
    dropped = "a placeholder anonymousId is dropped and flagged; the userId is the Kafka key"

    def label(value: str) -> str:
        return value.strip().strip(chr(34)).replace(" ", "_").replace("[", "").replace("]", "")

    for value in sorted(ILLEGAL_IDS - {""}):
        name = f"id-illegal-anonymousId-{label(value)}"
        cases.append(one_call(name, "illegal-id", valid("track", name, anonymousId=value, userId=DROP), f"anonymousId {placeholder}"))
    for value in ("undefined", "null", "anonymous", "[object Object]", "0", '"undefined"', " NULL "):
        name = f"id-dropped-anonymousId-{label(value)}"
        if any(c.name == name for c in cases):
            name += "-variant"
        cases.append(
            by_design(
                name,
                "illegal-id",
                valid("track", name, anonymousId=value),
                (
                    Raw(
                        (("message_id", message_id(name)), ("anonymous_id", None), ("user_id", f"user-{name}"), ("_key", f"user-{name}")),
                        flag="placeholder_anonymous_id",
                    ),
                ),
                dropped,
            )
        )
    for value in ("undefined", "null", "0", "[object Object]", '"undefined"', " NULL "):
        name = f"id-illegal-userId-{label(value)}"
        if any(c.name == name for c in cases):
            name += "-variant"
        cases.append(
            by_design(
                name,
                "illegal-id",
                valid("identify", name, userId=value),
                (Raw((("message_id", message_id(name)), ("user_id", value), ("_key", f"anon-{name}"))),),
                "a placeholder userId beside a usable anonymousId is taken verbatim; the identity resolver refuses to link it",
                path="/v1/identify",
            )
        )
    for value in ("undefined", "null"):
        name = f"id-illegal-userId-alone-{value}"
        cases.append(
            one_call(
                name, "illegal-id", valid("identify", name, anonymousId=DROP, userId=value), f"userId {placeholder}", call_type="identify"
            )
        )
    name = "id-illegal-both"
    cases.append(
        Case(
            name,
            "illegal-id",
            "/v1/track",
            dumps(valid("track", name, anonymousId="undefined", userId="null")),
            word=f"userId {placeholder}",
            bad_rows=(Row(0, f"anonymousId {placeholder}"),),
        )
    )
    name = "id-illegal-alias-userId"
    cases.append(
        one_call(name, "illegal-id", valid("alias", name, anonymousId=DROP, userId="undefined"), f"userId {placeholder}", call_type="alias")
    )
    name = "id-illegal-previousId-alias"
    cases.append(
        by_design(
            name,
            "illegal-id",
            valid("alias", name, previousId="anonymous"),
            (Raw((("message_id", message_id(name)), ("previous_id", "anonymous"))),),
            "a placeholder previousId is taken verbatim; the identity resolver refuses to merge it",
            path="/v1/alias",
        )
    )
    name = "id-illegal-anonymousId-empty"
    cases.append(one_call(name, "illegal-id", valid("track", name, anonymousId="", userId=DROP), "userId or anonymousId"))
    name = "id-illegal-anonymousId-zero-number"
    cases.append(one_call(name, "illegal-id", valid("track", name, anonymousId=0, userId=DROP), f"anonymousId {placeholder}"))
    name = "id-illegal-placeholders-in-batch"
    cases.append(
        in_batch(
            name,
            "illegal-id",
            [
                (valid("track", name, messageId=f"{name}-1", anonymousId="undefined", userId=DROP), f"anonymousId {placeholder}", True),
                (valid("track", name, messageId=f"{name}-2", anonymousId=DROP, userId="null"), f"userId {placeholder}", True),
            ],
        )
    )
    return cases


def timestamps() -> list[Case]:
    cases = []
    for label, value in {
        "year-0": "0000-01-01T00:00:00Z",
        "all-zero": "0000-00-00T00:00:00Z",
        "year-10000": "10000-01-01T00:00:00Z",
        "month-13": "2026-13-01T00:00:00Z",
        "february-30": "2026-02-30T00:00:00Z",
        "hour-25": "2026-03-01T25:00:00Z",
        "no-time-zone": "2026-03-01T12:00:00",
        "offset-25h": "2026-03-01T12:00:00+25:00",
        "not-a-date": "next tuesday",
        "empty": "",
    }.items():
        name = f"time-{label}"
        cases.append(one_call(name, "timestamp", valid("track", name, timestamp=value), "timestamp"))
    for field in ("originalTimestamp", "sentAt"):
        name = f"time-year-0-{field}"
        cases.append(one_call(name, "timestamp", valid("track", name, **{field: "0000-01-01T00:00:00Z"}), field))
    name = "time-year-0-batch-sentAt"
    body = {"hostileCase": marker(name), "batch": [valid("track", name)], "sentAt": "0000-01-01T00:00:00Z"}
    cases.append(whole_body(name, "timestamp", dumps(body), 400, "sentAt", row_word="sentAt"))
    clamped = "further ahead than a minute: clamped to receivedAt and flagged"
    for label, fields in {
        "year-9999": {"timestamp": "9999-12-31T23:59:59Z"},
        "year-9999-minus-14h": {"timestamp": "9999-12-31T23:59:59-14:00"},
        "year-3000": {"timestamp": "3000-01-01T00:00:00Z"},
        "original-year-9999": {"originalTimestamp": "9999-12-31T23:59:59Z"},
        "one-year-ahead": {"timestamp": "2099-01-01T00:00:00Z"},
    }.items():
        name = f"time-future-{label}"
        cases.append(
            by_design(
                name,
                "timestamp",
                valid("track", name, **fields),
                (Raw((("message_id", message_id(name)),), flag="future_timestamp_clamped"),),
                clamped,
            )
        )
    out_of_range = "the clock correction (receivedAt - (sentAt - timestamp)) overflows: receivedAt is used, flagged"
    for label, fields in {
        "sentAt-year-1": {"timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
        "sentAt-year-9999": {"timestamp": "2026-03-01T12:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
    }.items():
        name = f"time-skew-{label}"
        cases.append(
            by_design(
                name,
                "timestamp",
                valid("track", name, **fields),
                (Raw((("message_id", message_id(name)),), flag="timestamp_out_of_range"),),
                out_of_range,
            )
        )
    name = "time-year-1"
    cases.append(
        by_design(
            name,
            "timestamp",
            valid("track", name, timestamp="0001-01-01T00:00:00Z"),
            (Raw((("message_id", message_id(name)), ("timestamp", "0001-01-01T00:00:00+00:00"), ("flags", []))),),
            "the far past is taken as is, unflagged (ClickHouse's DateTime64 starts in 1900)",
        )
    )
    return cases


def unknown_types() -> list[Case]:
    cases = []
    for label, value in {
        "nope": "nope",
        "upper-TRACK": "TRACK",
        "trailing-space": "track ",
        "empty": "",
        "delete": "delete",
        "nul": "track\x00",
        "batch": "batch",
        "missing": DROP,
    }.items():
        name = f"unknown-type-{label}"
        cases.append(all_refused(name, "unknown-type", [valid("track", name, type=value)], "type"))
    name = "unknown-type-in-mixed-batch"
    cases.append(
        in_batch(
            name,
            "unknown-type",
            [
                (valid("track", name, messageId=f"{name}-1", type="nope"), "type", True),
                (valid("track", name, messageId=f"{name}-2", type="Identify"), "type", True),
            ],
        )
    )
    for path in ("/v1/nope", "/v1/TRACK", "/v1/tracks", "/v1/", "/v2/track", "/v1/track/extra", "/v1/%2e%2e/%2e%2e/etc/passwd"):
        cases.append(
            sender_refused(
                f"unknown-route-{path.strip('/').replace('/', '_').replace('%', '')}",
                "unknown-type",
                path,
                404,
                "path",
                headers=JSON_WITH_KEY,
            )
        )
    for method, path in (("GET", "/v1/track"), ("PUT", "/v1/batch"), ("DELETE", "/b"), ("PATCH", "/v1/identify")):
        cases.append(
            sender_refused(
                f"unknown-method-{method}-{path.strip('/').replace('/', '_')}",
                "unknown-type",
                path,
                405,
                "method",
                method=method,
                headers=JSON_WITH_KEY,
            )
        )
    name = "unknown-type-pixel-route"
    cases.append(
        Case(
            name,
            "unknown-type",
            f"/v1/pixel/nonsense?writeKey={WRITE_KEY}&event=E&userId=u&hostileCase={marker(name)}",
            method="GET",
            headers=(),
            word="type",
            bad_rows=(Row(0, "type"),),
        )
    )
    return cases


def content_types() -> list[Case]:
    """Whatever type a body declares, JSON is read as JSON (server SDKs send JSON declared as a form or with no
    type, and RudderStack's gateway reads it); only a body that is not JSON, under a type that is not JSON's, is 415."""
    cases = []
    for content_type in (
        "application/xml",
        "text/xml",
        "text/html",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "image/gif",
        "application/javascript",
        "text/csv",
        "application/json-patch+json",
        "application/jsonx",
        "application/cbor",
        "application/msgpack",
        "application/x-ndjson",
    ):
        slug = content_type.split(";")[0].replace("/", "-").replace("+", "-")
        headers = (("content-type", content_type), ("x-write-key", WRITE_KEY))
        name = f"content-type-{slug}"
        cases.append(
            Case(
                name,
                "content-type",
                "/v1/track",
                dumps(valid("track", name)),
                headers,
                status=200,
                by_design=True,
                raw=(Raw((("message_id", message_id(name)),)),),
                note="a JSON body is JSON whatever type it declares",
            )
        )
        name = f"content-type-{slug}-not-json"
        body = f"<hostileCase>{marker(name)}</hostileCase>&a=1".encode()
        cases.append(
            whole_body(name, "content-type", body, 415, "content-type", row_word="content-type", headers=headers, path="/v1/track")
        )
    return cases


def write_keys() -> list[Case]:
    cases = []

    def basic(user: str, password: str = "") -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    for label, headers, status, word in [
        ("none", JSON_NO_KEY, 401, "missing"),
        ("wrong-header", (("content-type", "application/json"), ("x-write-key", "wk-nope")), 401, "unknown"),
        ("wrong-basic", (("content-type", "application/json"), ("authorization", basic("wk-nope"))), 401, "unknown"),
        ("wrong-case", (("content-type", "application/json"), ("x-write-key", WRITE_KEY.upper())), 401, "unknown"),
        ("prefix-of-key", (("content-type", "application/json"), ("x-write-key", WRITE_KEY[:-1])), 401, "unknown"),
        ("basic-not-base64", (("content-type", "application/json"), ("authorization", "Basic %%%")), 401, "missing"),
        ("basic-password-only", (("content-type", "application/json"), ("authorization", basic("", WRITE_KEY))), 401, "missing"),
        ("bearer-instead-of-basic", (("content-type", "application/json"), ("authorization", f"Bearer {WRITE_KEY}")), 401, "missing"),
        ("disabled-header", (("content-type", "application/json"), ("x-write-key", DISABLED_KEY)), 403, "disabled"),
        ("disabled-basic", (("content-type", "application/json"), ("authorization", basic(DISABLED_KEY))), 403, "disabled"),
    ]:
        for path in ("/v1/track", "/v1/batch"):
            name = f"key-{label}-{path.strip('/').replace('/', '_')}"
            body = dumps(valid("track", name)) if path == "/v1/track" else dumps({"batch": [valid("track", name)]})
            cases.append(sender_refused(name, "write-key", path, status, "writeKey" if status == 401 else word, body=body, headers=headers))
    for label, key, status in [
        ("wrong", "wk-nope", 401),
        ("wrong-trailing-space", WRITE_KEY + "%20", 401),
        ("disabled", DISABLED_KEY, 403),
    ]:
        name = f"key-query-{label}"
        cases.append(sender_refused(name, "write-key", f"/v1/track?writeKey={key}", status, "writeKey"))
    for label, key, status in [("wrong", "wk-nope", 401), ("disabled", DISABLED_KEY, 403), ("number", 12345, 401), ("null", None, 401)]:
        name = f"key-body-{label}"
        body = dumps({**valid("track", name), "writeKey": key})
        cases.append(sender_refused(name, "write-key", "/v1/t", status, "writeKey", body=body, headers=(("content-type", "text/plain"),)))
    # A wrong or disabled key in the headers is refused before the body is read: not even a bad row.
    for label, key, status in [("wrong", "wk-nope", 401), ("disabled", DISABLED_KEY, 403)]:
        name = f"key-{label}-with-invalid-json"
        cases.append(
            sender_refused(
                name,
                "write-key",
                "/v1/batch",
                status,
                "writeKey",
                body=b'{"hostileCase":"%s","batch":[' % marker(name).encode(),
                headers=(("content-type", "application/json"), ("x-write-key", key)),
            )
        )
        name = f"key-{label}-with-gzip-bomb"
        cases.append(
            sender_refused(
                name,
                "write-key",
                "/v1/batch",
                status,
                "writeKey",
                body=gzip_of_repeats(b"\0", 100),
                headers=(("content-type", "application/json"), ("content-encoding", "gzip"), ("x-write-key", key)),
            )
        )
    # Without a key in the headers the key may be in the body, which must be read first: an unreadable body is
    # answered for what it is, and kept without a source (see the report: anyone can write such bad rows).
    name = "key-none-with-invalid-json"
    cases.append(
        whole_body(
            name,
            "write-key",
            b'{"hostileCase":"%s","writeKey":"wk-nope","batch":[' % marker(name).encode(),
            400,
            "JSON",
            headers=JSON_NO_KEY,
            note="no key outside the body: the body is read, refused and kept with source_id None",
        )
    )
    for label, query, status in [("none", "", 401), ("wrong", "&writeKey=wk-nope", 401), ("disabled", f"&writeKey={DISABLED_KEY}", 403)]:
        name = f"key-pixel-{label}"
        cases.append(Case(name, "write-key", f"/v1/pixel/track?event=E&userId=u{query}", method="GET", headers=(), status=status))
    # Origins: a source that lists its origins refuses every other browser (403) and keeps the call as an `auth` bad row.
    for label, origin in {
        "evil": "https://evil.example",
        "null": "null",
        "suffix": "https://shop.example.evil.example",
        "trailing-slash": SHOP_ORIGIN + "/",
        "http": "http://shop.example",
    }.items():
        name = f"origin-{label}"
        headers = (("content-type", "application/json"), ("x-write-key", SHOP_KEY), ("origin", origin))
        cases.append(
            whole_body(name, "origin", dumps(valid("track", name)), 403, "origin", row_word="origin", path="/v1/track", headers=headers)
        )
    name = "origin-evil-body-key"
    cases.append(
        whole_body(
            name,
            "origin",
            dumps({**valid("track", name), "writeKey": SHOP_KEY}),
            403,
            "origin",
            row_word="origin",
            path="/v1/t",
            headers=(("content-type", "text/plain"), ("origin", "https://evil.example")),
        )
    )
    return cases


def pixels() -> list[Case]:
    cases = []
    key = f"writeKey={WRITE_KEY}"

    def pixel(name: str, query: str, word: str, index: int | None, marked: bool = True) -> None:
        cases.append(
            Case(name, "pixel", f"/v1/pixel/track?{key}&{query}", method="GET", headers=(), word=word, bad_rows=(Row(index, word, marked),))
        )

    name = "pixel-data-not-base64"
    pixel(name, f"hostileCase={marker(name)}&data=%25%25%25", "data", None)
    name = "pixel-data-not-json"
    pixel(name, f"hostileCase={marker(name)}&data={base64.urlsafe_b64encode(b'not json ' + marker(name).encode()).decode()}", "data", None)
    name = "pixel-data-array"
    cases.append(
        Case(
            name,
            "pixel",
            f"/v1/pixel?{key}&data={base64.urlsafe_b64encode(dumps([marker(name)])).decode()}",
            method="GET",
            headers=(),
            word="event",
            bad_rows=(Row(0, "expected a JSON object"),),
        )
    )
    name = "pixel-data-NaN"
    data = base64.urlsafe_b64encode(b'{"type":"track","x":NaN}').decode()
    pixel(name, f"hostileCase={marker(name)}&data={data}", "data", None)
    name = "pixel-dotted-id"
    pixel(name, f"hostileCase={marker(name)}&event=E&userId.x=1", "userId.x", None)
    name = "pixel-conflicting-params"
    pixel(name, f"hostileCase={marker(name)}&event=E&userId=u&properties.a=1&properties.a.b=2", "properties.a.b", None)
    name = "pixel-no-event"
    pixel(name, f"hostileCase={marker(name)}&userId=u", "event", 0)
    name = "pixel-long-userId"
    pixel(name, f"hostileCase={marker(name)}&event=E&userId={'x' * 101}", "userId", 0)
    name = "pixel-long-string-property"
    pixel(name, f"hostileCase={marker(name)}&event=E&userId=u&properties.s={'x' * 8193}", "longer than 8192", 0)
    name = "pixel-year-0"
    pixel(name, f"hostileCase={marker(name)}&event=E&userId=u&timestamp=0000-01-01T00:00:00Z", "timestamp", 0)
    return cases


def mixed_batches() -> list[Case]:
    name = "mixed-every-kind"
    return [
        in_batch(
            name,
            "mixed-batch",
            [
                (valid("track", name, messageId=f"{name}-1", anonymousId=[1]), "anonymousId", True),
                (valid("track", name, messageId=f"{name}-2", type="nope"), "type", True),
                (valid("track", name, messageId="m" * 101), "messageId", True),
                (valid("track", name, messageId=f"{name}-4", properties={"x": nested_value(17)}), "nested deeper", True),
                (marker(name), "expected a JSON object", True),
                (42, "expected a JSON object", False),
                (None, "expected a JSON object", False),
                ([], "expected a JSON object", False),
                (valid("track", name, messageId=f"{name}-9", timestamp="0000-01-01T00:00:00Z"), "timestamp", True),
                (valid("track", name, messageId=f"{name}-10", anonymousId=DROP, userId=DROP), "userId or anonymousId", True),
            ],
        )
    ]


CORPUS: list[Case] = [
    *invalid_json(),
    *invalid_utf8(),
    *wrong_types(),
    *nan_and_infinity(),
    *enormous_numbers(),
    *over_limits(),
    *deep_nesting(),
    *oversized_batches(),
    *gzip_mismatches(),
    *ids(),
    *timestamps(),
    *unknown_types(),
    *content_types(),
    *write_keys(),
    *pixels(),
    *mixed_batches(),
]
_names = Counter(case.name for case in CORPUS)
assert not [name for name, n in _names.items() if n > 1], f"duplicate case names: {[name for name, n in _names.items() if n > 1]}"
assert all(400 <= case.status < 500 or (case.status == 200 and (case.by_design or case.rejected)) for case in CORPUS)


def counts() -> dict[str, tuple[int, int]]:
    """Per class: (refused, accepted by design)."""
    found: dict[str, list[int]] = {}
    for case in CORPUS:
        found.setdefault(case.kind, [0, 0])[case.by_design] += 1
    return {kind: (refused, accepted) for kind, (refused, accepted) in found.items()}
