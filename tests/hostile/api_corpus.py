"""The management API's hostile-input corpus: named requests, each with the status it is owed and a word its
error must name (the field or the rule). None may get a 5xx: whatever a client sends is its own fault.

Kept as data, like the collector's corpus (tests/hostile/corpus.py), generated where one rule covers many
inputs (a wrong type for every default property, every placeholder id, bad values for every query parameter).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from schemas.identity import ILLEGAL_IDS
from schemas.user_commands import DEFAULT_PROPERTIES

UNKNOWN_PERSON = "5f0c1a52-5e0a-4bd4-9d2a-1f6d4e3c2b1a"
MB = 1 << 20


class Case(NamedTuple):
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    word: str  # a field or rule the error names
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def nested(depth: int) -> bytes:
    return b'{"user_id": "u", "properties": {"p": ' + b"[" * depth + b"1" + b"]" * depth + b"}}"


def create_cases() -> list[Case]:
    cases = [
        Case("invalid json", "POST", "/api/v1/users", b'{"user_id": ', 422, "json_invalid"),
        Case("empty body", "POST", "/api/v1/users", b"", 422, "body"),
        Case("a json array", "POST", "/api/v1/users", body([{"user_id": "u"}]), 422, "model_attributes_type"),
        Case("a json string", "POST", "/api/v1/users", body("u"), 422, "model_attributes_type"),
        Case("json null", "POST", "/api/v1/users", b"null", 422, "body"),
        Case("no identifier", "POST", "/api/v1/users", body({"name": "Ann"}), 422, "required_identifier"),
        Case("blank identifier", "POST", "/api/v1/users", body({"user_id": "   "}), 422, "user_id"),
        Case("overlong user id", "POST", "/api/v1/users", body({"user_id": "u" * 5000}), 422, "string_too_long"),
        Case("an email that is not one", "POST", "/api/v1/users", body({"email": "@@"}), 422, "email"),
        Case("unknown top-level field", "POST", "/api/v1/users", body({"user_id": "u", "plan": "pro"}), 422, "extra_forbidden"),
        Case("properties not an object", "POST", "/api/v1/users", body({"user_id": "u", "properties": [1]}), 422, "properties"),
        Case(
            "too many properties",
            "POST",
            "/api/v1/users",
            body({"user_id": "u", "properties": {f"p{i}": i for i in range(1001)}}),
            422,
            "max_properties",
        ),
        Case("property name with spaces", "POST", "/api/v1/users", body({"user_id": "u", "properties": {"a b": 1}}), 422, "property_name"),
        Case("property name overlong", "POST", "/api/v1/users", body({"user_id": "u", "properties": {"p" * 200: 1}}), 422, "property_name"),
        Case("property name empty", "POST", "/api/v1/users", body({"user_id": "u", "properties": {"": 1}}), 422, "property_name"),
        Case(
            "a default property among custom ones",
            "POST",
            "/api/v1/users",
            body({"user_id": "u", "properties": {"city": "x"}}),
            422,
            "default_property",
        ),
        Case("status unknown", "POST", "/api/v1/users", body({"user_id": "u", "status": "deleted"}), 422, "status"),
        Case("tags not a list", "POST", "/api/v1/users", body({"user_id": "u", "tags": "vip"}), 422, "tags"),
        Case("a tag too long", "POST", "/api/v1/users", body({"user_id": "u", "tags": ["t" * 100]}), 422, "string_too_long"),
        Case("too many tags", "POST", "/api/v1/users", body({"user_id": "u", "tags": [f"t{i}" for i in range(101)]}), 422, "too_long"),
        Case("nesting past any parser's depth", "POST", "/api/v1/users", nested(100_000), 422, "json_invalid"),
        Case("a lone surrogate", "POST", "/api/v1/users", b'{"user_id": "u-\\ud800"}', 422, "json_invalid"),
        Case(
            "a lone surrogate in a property",
            "POST",
            "/api/v1/users",
            b'{"user_id": "u", "properties": {"p": "\\udfff"}}',
            422,
            "json_invalid",
        ),
        Case(
            "a lone surrogate in a property name",
            "POST",
            "/api/v1/users",
            b'{"user_id": "u", "properties": {"\\ud800": 1}}',
            422,
            "json_invalid",
        ),
        Case("NaN", "POST", "/api/v1/users", b'{"user_id": "u", "properties": {"p": NaN}}', 422, "json_invalid"),
        Case("Infinity", "POST", "/api/v1/users", b'{"user_id": "u", "properties": {"p": -Infinity}}', 422, "json_invalid"),
        Case("a body over a megabyte", "POST", "/api/v1/users", body({"user_id": "u", "properties": {"p": "x" * (2 * MB)}}), 413, "body"),
        Case(
            "not JSON at all",
            "POST",
            "/api/v1/users",
            b"user_id=u",
            422,
            "json_invalid",
            (("content-type", "application/x-www-form-urlencoded"),),
        ),
        Case(
            "an overlong idempotency key",
            "POST",
            "/api/v1/users",
            body({"user_id": "u"}),
            422,
            "Idempotency-Key",
            (("content-type", "application/json"), ("idempotency-key", "k" * 300)),
        ),
    ]
    for name in DEFAULT_PROPERTIES:
        for wrong in (5, True, ["x"], {"x": 1}):
            cases.append(
                Case(
                    f"{name} as {type(wrong).__name__}",
                    "POST",
                    "/api/v1/users",
                    body({"user_id": "u", name: wrong}) if name != "user_id" else body({name: wrong}),
                    422,
                    name,
                )
            )
    for placeholder in sorted(ILLEGAL_IDS - {""}):
        cases.append(
            Case(f"placeholder user id {placeholder!r}", "POST", "/api/v1/users", body({"user_id": placeholder}), 422, "placeholder")
        )
    return cases


def update_cases() -> list[Case]:
    path = f"/api/v1/users/{UNKNOWN_PERSON}"
    return [
        Case("patch: set not an object", "PATCH", path, body({"set": [1]}), 422, "set"),
        Case("patch: unset not a list", "PATCH", path, body({"unset": "a"}), 422, "unset"),
        Case("patch: unset the user id", "PATCH", path, body({"unset": ["user_id"]}), 422, "identifier_kept"),
        Case("patch: set and unset one key", "PATCH", path, body({"set": {"a": 1}, "unset": ["a"]}), 422, "conflict"),
        Case("patch: a bad email", "PATCH", path, body({"set": {"email": "nope"}}), 422, "email"),
        Case("patch: unknown field", "PATCH", path, body({"sets": {}}), 422, "extra_forbidden"),
        Case("patch: tags wrong shape", "PATCH", path, body({"tags": ["a"]}), 422, "tags"),
        Case("patch: unknown user", "PATCH", path, body({"set": {"a": 1}}), 404, "ref"),
        Case(
            "patch: a ref that is no ref", "PATCH", "/api/v1/users/robert'); DROP TABLE persons;--", body({"set": {"a": 1}}), 422, "format"
        ),
        Case("patch: a lone surrogate", "PATCH", path, b'{"set": {"a": "\\ud800"}}', 422, "json_invalid"),
        Case("delete: unknown user", "DELETE", path, None, 404, "ref"),
        Case("delete: empty user id ref", "DELETE", "/api/v1/users/user_id:", None, 422, "format"),
        Case("erase: unknown email", "POST", "/api/v1/users/email:nobody@example.com/erase", None, 404, "ref"),
        Case("bulk: neither refs nor filter", "POST", "/api/v1/users/bulk", body({"update": {"set": {"a": 1}}}), 422, "one_of"),
        Case("bulk: both refs and filter", "POST", "/api/v1/users/bulk", body({"refs": ["x"], "filter": {}, "update": {}}), 422, "one_of"),
        Case("bulk: update missing", "POST", "/api/v1/users/bulk", body({"refs": [UNKNOWN_PERSON]}), 422, "required"),
        Case(
            "bulk: an identifier in bulk",
            "POST",
            "/api/v1/users/bulk",
            body({"refs": [UNKNOWN_PERSON], "update": {"set": {"email": "a@b.co"}}}),
            422,
            "unique",
        ),
        Case(
            "bulk: unknown filter",
            "POST",
            "/api/v1/users/bulk",
            body({"filter": {"sql": "1=1"}, "update": {"set": {"a": 1}}}),
            422,
            "filter.sql",
        ),
        Case(
            "bulk: a filter of the wrong type",
            "POST",
            "/api/v1/users/bulk",
            body({"filter": {"q": 5}, "update": {"set": {"a": 1}}}),
            422,
            "filter",
        ),
        Case("bulk: a bad ref", "POST", "/api/v1/users/bulk", body({"refs": ["nobody"], "update": {"set": {"a": 1}}}), 422, "format"),
        Case(
            "bulk: too many refs",
            "POST",
            "/api/v1/users/bulk",
            body({"refs": ["x"] * 10_001, "update": {"set": {"a": 1}}}),
            422,
            "too_long",
        ),
    ]


def read_cases() -> list[Case]:
    return [
        Case("get: unknown person", "GET", f"/api/v1/users/{UNKNOWN_PERSON}", None, 404, "ref"),
        Case("get: not a ref", "GET", "/api/v1/users/%00%ff", None, 422, "format"),
        Case("get: an email with a path in it", "GET", "/api/v1/users/email:a%2F..%2F..%40x.io", None, 404, "exists"),
        Case("get: a very long ref", "GET", "/api/v1/users/user_id:" + "x" * 8000, None, 404, "ref"),
        Case("list: sort by a column that is none", "GET", "/api/v1/users?sort=password", None, 422, "sort"),
        Case("list: sort by SQL", "GET", "/api/v1/users?sort=email;DROP", None, 422, "sort"),
        Case("list: limit zero", "GET", "/api/v1/users?limit=0", None, 422, "limit"),
        Case("list: limit not a number", "GET", "/api/v1/users?limit=ten", None, 422, "limit"),
        Case("list: limit huge", "GET", "/api/v1/users?limit=99999999999999999999", None, 422, "limit"),
        Case("list: kind unknown", "GET", "/api/v1/users?kind=robot", None, 422, "kind"),
        Case("list: status unknown", "GET", "/api/v1/users?status=gone", None, 422, "status"),
        Case("list: a forged cursor", "GET", "/api/v1/users?cursor=WyJlbWFpbCIsIDEsIDJd", None, 422, "cursor"),
        Case("list: cursor not base64", "GET", "/api/v1/users?cursor=%%%", None, 422, "cursor"),
        Case(
            "list: too many property filters",
            "GET",
            "/api/v1/users?" + "&".join(f"properties.p{i}=1" for i in range(30)),
            None,
            422,
            "max_filters",
        ),
        Case("events: limit negative", "GET", f"/api/v1/users/{UNKNOWN_PERSON}/events?limit=-1", None, 422, "limit"),
        Case("events: a forged cursor", "GET", f"/api/v1/users/{UNKNOWN_PERSON}/events?cursor=WzEsMl0", None, 404, "ref"),
        Case("counts: days zero", "GET", f"/api/v1/users/{UNKNOWN_PERSON}/event-counts?days=0", None, 422, "days"),
        Case("counts: days past a year", "GET", f"/api/v1/users/{UNKNOWN_PERSON}/event-counts?days=5000", None, 422, "days"),
        Case("jobs: unknown", "GET", "/api/v1/jobs/nope", None, 404, "job_id"),
        Case("commands: unknown", "GET", "/api/v1/commands/nope", None, 404, "command_id"),
        Case("a path that is none", "GET", "/api/v1/nothing-here", None, 404, "path"),
        Case("a method that is none", "PUT", "/api/v1/users", body({}), 405, "method"),
    ]


CORPUS = create_cases() + update_cases() + read_cases()
assert len({case.name for case in CORPUS}) == len(CORPUS), "case names are unique"

# Accepted by design: the API takes them (202) and says so with a command id.
ACCEPTED = [
    Case(
        "an integer past 64 bits is kept as a number",
        "POST",
        "/api/v1/users",
        b'{"user_id": "big", "properties": {"p": 1' + b"0" * 40 + b"}}",
        202,
        "command_id",
    ),
    Case(
        "unicode everywhere",
        "POST",
        "/api/v1/users",
        body({"user_id": "ユーザー-🦊", "name": "Zoë 🦊", "properties": {"key": "значение 🦊"}}),
        202,
        "command_id",
    ),
    Case(
        "SQL in values stays a value",
        "POST",
        "/api/v1/users",
        body({"user_id": "x'); DROP TABLE persons;--", "properties": {"q": "' OR 1=1"}}),
        202,
        "command_id",
    ),
]
CORPUS += ACCEPTED
