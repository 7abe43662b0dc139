"""Write keys and the sources they stand for.

A write key is public (it ships in web pages) and can only send events. Keys come from a JSON file
(`FOOTFALL_SOURCES_FILE`) or from `FOOTFALL_WRITE_KEYS="key=source,key2=source2"`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request


@dataclass(frozen=True)
class Source:
    id: str
    write_key: str
    enabled: bool = True


class SourceRegistry:
    def __init__(self, sources: list[Source]):
        self._sources = list(sources)

    @classmethod
    def from_environment(cls) -> SourceRegistry:
        path = os.environ.get("FOOTFALL_SOURCES_FILE")
        if path:
            entries = json.loads(Path(path).read_text())
            return cls([Source(id=e["id"], write_key=e["write_key"], enabled=e.get("enabled", True)) for e in entries])
        spec = os.environ.get("FOOTFALL_WRITE_KEYS", "dev-write-key=default")
        sources = []
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            key, _, source_id = pair.partition("=")
            sources.append(Source(id=source_id or "default", write_key=key))
        return cls(sources)

    def find(self, write_key: str) -> Source | None:
        """Constant-time comparison against every key, so timing tells nothing about which key is close."""
        found = None
        for source in self._sources:
            if hmac.compare_digest(source.write_key.encode(), write_key.encode()):
                found = source
        return found


def write_key_of(request: Request, body: object) -> str | None:
    """The write key from Basic auth (key as user), X-Write-Key, ?writeKey= or the body's writeKey."""
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, _ = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        if user:
            return user
    key = request.headers.get("x-write-key") or request.query_params.get("writeKey")
    if key:
        return key
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return body["writeKey"]
    return None
