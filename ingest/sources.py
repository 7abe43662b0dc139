"""Write keys and the sources they stand for.

A write key is public (it ships in web pages) and can only send events. Keys come from a JSON file
(`FOOTFALL_SOURCES_FILE`: a list of `Source` objects) or from `FOOTFALL_WRITE_KEYS="key=source,key2=source2"`.
Keys are looked up by their SHA-256 digest, so the lookup's timing says nothing about a key; a key
is never part of a repr or a log message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.requests import Request


class RateLimit(BaseModel):
    """A token bucket: `events_per_second` on average, bursts of up to `burst` events."""

    model_config = ConfigDict(frozen=True)

    events_per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class Source(BaseModel):
    """A write key and what the collector does with its events.

    Personal data, per source (truncation and hashing off by default; none touches what was already written):
    - `truncate_ip`: the client's address is stored with its last IPv4 octet / last 80 IPv6 bits zeroed.
    - `hash_emails`: email addresses are replaced by `sha256:<hex>` (SHA-256 of the trimmed, lower-cased
      address, unkeyed) before the event is written to Kafka: `traits.email`, `context.traits.email`,
      `properties.email`, any other value in traits/context.traits/properties that is an address as a
      whole, and ids that are addresses; refused calls on the dead-letter topic too. The same address
      still links the same person downstream; profiles lose its domain. Details: ingest.privacy.
    - `geoip` (on by default): the full client address's country, region and city go into `context.geo`
      (ingest.geo), looked up before any truncation; off, nothing is located.

    Companies, per source: `company_domain_membership` links a user who sent through this source and whose
    email has a company domain (not free mail) to the companies with that domain, flagged derived
    (projections/companies.py; the projector learns the sources from `footfall projector`'s composition).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    write_key: str = Field(min_length=1, repr=False)
    enabled: bool = True
    # Browsers on these origins may send (e.g. "https://shop.example.com"); empty means any origin.
    allowed_origins: tuple[str, ...] = ()
    # Zero the last IPv4 octet / the last 80 bits of IPv6 before the address is stored.
    truncate_ip: bool = False
    # Replace email addresses by "sha256:<hex>" before the event is written (ingest.privacy).
    hash_emails: bool = False
    # Locate the client address (country, region, city) into context.geo (ingest.geo).
    geoip: bool = True
    # Per write key and per device key; None means the collector's defaults (FOOTFALL_*_EVENTS_PER_SECOND).
    rate_limit: RateLimit | None = None
    device_rate_limit: RateLimit | None = None
    # Link this source's users to the company of their email domain (derived memberships).
    company_domain_membership: bool = False
    # The host analytics.js should send to (e.g. "collector.example.com/v1"); default: the request's host.
    api_host: str | None = None

    def allows_origin(self, origin: str | None) -> bool:
        """Server-side SDKs send no Origin; a browser's must be listed when the source lists any."""
        return not self.allowed_origins or origin is None or origin in self.allowed_origins


_SOURCE_LIST = TypeAdapter(list[Source])


def _digest(write_key: str) -> bytes:
    return hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).digest()


class SourceRegistry:
    def __init__(self, sources: list[Source]):
        self._by_digest = {_digest(source.write_key): source for source in sources}
        self._by_id = {source.id: source for source in sources}

    @classmethod
    def from_file(cls, path: Path) -> SourceRegistry:
        return cls(_SOURCE_LIST.validate_json(path.read_bytes()))

    @classmethod
    def from_spec(cls, spec: str) -> SourceRegistry:
        """`key=source,key2=source2`; a key without `=source` belongs to the source "default"."""
        sources = []
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            key, _, source_id = pair.partition("=")
            sources.append(Source(id=source_id or "default", write_key=key))
        return cls(sources)

    def all(self) -> list[Source]:
        """Every source (the console's Sources page lists them with their snippets)."""
        return list(self._by_digest.values())

    def find(self, write_key: str) -> Source | None:
        """The only comparison is between SHA-256 digests, so how long it takes says nothing about how
        close a guess is to a real key (the constant-time property that matters), in O(1) for any number of keys."""
        return self._by_digest.get(_digest(write_key))

    def find_by_id(self, source_id: str) -> Source | None:
        """A source by its id (of several listed with one id, the last)."""
        return self._by_id.get(source_id)


def write_key_of(request: Request, body: object = None) -> str | None:
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
