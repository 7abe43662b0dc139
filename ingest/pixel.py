"""The GET pixel: an event in the query string, for places that can only load an image (emails, <noscript>).

Two spellings: `?data=<base64 of the call's JSON>` (Segment's pixel API; standard or URL-safe alphabet,
padding optional), or plain parameters (`event=Email+Opened&userId=42`), dotted for the objects
(`properties.plan=pro`, `context.campaign.source=newsletter`), as Snowplow's and Segment's pixels do.
Plain values stay strings: a query string has no types.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from ingest.body import BodyError

OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
NOT_EVENT_FIELDS = ("data", "writeKey")


def pixel_call(params: QueryParams) -> Any:
    """The call a pixel request carries."""
    return decoded_data(params["data"]) if "data" in params else plain_call(params)


def decoded_data(data: str) -> Any:
    try:
        standard = data.replace(" ", "+").replace("-", "+").replace("_", "/")  # "+" arrives as " " when not URL-encoded
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BodyError(400, "data", "not base64 (standard or URL-safe)", data.encode(), rule="not_base64") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, "data", f"not base64 of JSON: {exc}", raw, rule="invalid_json") from exc


def plain_call(params: QueryParams) -> dict[str, Any]:
    call: dict[str, Any] = {}
    for name, value in params.multi_items():
        if name in NOT_EVENT_FIELDS:
            continue
        head, dot, rest = name.partition(".")
        if not dot:
            call[name] = value
        elif head in OBJECT_FIELDS:
            _put(call.setdefault(head, {}), rest.split("."), value, name)
        else:
            raise BodyError(400, name, f"only {', '.join(OBJECT_FIELDS)} take dotted parameters", rule="dotted_parameter")
    return call


def _put(target: Any, path: list[str], value: str, name: str) -> None:
    for part in path[:-1]:
        if not isinstance(target, dict):
            break
        target = target.setdefault(part, {})
    if not isinstance(target, dict) or not all(path):
        raise BodyError(400, name, "conflicts with another parameter or has an empty part", rule="conflicting_parameter")
    target[path[-1]] = value
