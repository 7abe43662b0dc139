"""GeoIP at the collector (ingest/geo.py): looked up offline from the full client address, before any
truncation, and written into the raw event's context.geo."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import plevin
from starlette.requests import Request

from ingest.edge import edge_of
from ingest.geo import locate, locate_off_loop
from ingest.normalize import Edge, normalize
from ingest.sources import Source
from schemas.events import RawEvent

SOURCE = Source(id="web", write_key="wk-secret")
GOOGLE_DNS, CLOUDFLARE_DNS = "8.8.8.8", "1.1.1.1"


def edge_for(peer: str, truncate: bool) -> Edge:
    made: list[Edge] = []

    async def app(scope, _receive, _send):
        made.append(await edge_of(Request(scope), SOURCE.model_copy(update={"truncate_ip": truncate})))

    scope = {"type": "http", "method": "POST", "path": "/v1/t", "query_string": b"", "headers": [], "client": (peer, 5000)}
    asyncio.run(app(scope, None, None))
    return made[0]


def test_public_addresses_have_a_country_region_and_city():
    assert locate(GOOGLE_DNS) == {"country": "US", "region": "California", "city": "Mountain View"}
    assert locate(CLOUDFLARE_DNS)["country"] == "AU"
    assert locate("2a03:2880:f003:c07:face:b00c::2")["country"] == "US"  # IPv6 too


def test_private_reserved_and_non_addresses_have_no_location():
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.7", "::1", "203.0.113.5", "not-an-ip", "", None):
        assert locate(address) is None, address


def test_a_miss_is_looked_up_off_the_event_loop_and_a_hit_on_it(monkeypatch):
    """The same answer as `locate`; a miss runs on the geoip thread, a cached address never leaves the loop."""
    threads: list[str] = []
    real_lookup = plevin.lookup

    def spying(address):
        threads.append(threading.current_thread().name)
        return real_lookup(address)

    async def twice(address):
        return await locate_off_loop(address), await locate_off_loop(address), threading.current_thread().name

    locate.cache_clear()
    monkeypatch.setattr(plevin, "lookup", spying)
    first, again, loop_thread = asyncio.run(twice(GOOGLE_DNS))
    assert first == again == {"country": "US", "region": "California", "city": "Mountain View"}
    assert len(threads) == 1 and threads[0].startswith("geoip") and threads[0] != loop_thread  # looked up once, off the loop
    assert asyncio.run(locate_off_loop(None)) is None and asyncio.run(locate_off_loop("10.1.2.3")) is None


def test_lookups_are_cached():
    locate(GOOGLE_DNS)
    hits = locate.cache_info().hits
    locate(GOOGLE_DNS)
    assert locate.cache_info().hits == hits + 1


def test_the_location_comes_from_the_full_address_even_when_the_source_truncates_it():
    full, truncated = edge_for(GOOGLE_DNS, truncate=False), edge_for(GOOGLE_DNS, truncate=True)
    assert truncated.ip == "8.8.8.0" and full.ip == GOOGLE_DNS
    assert truncated.geo == full.geo == locate(GOOGLE_DNS)


def test_the_location_lands_in_the_raw_events_context_geo_over_a_clients():
    edge = Edge(source_id="web", received_at=datetime.now(UTC), ip=GOOGLE_DNS, user_agent=None, geo=locate(GOOGLE_DNS))
    call = {"type": "track", "event": "x", "anonymousId": "a1", "context": {"geo": {"country": "FR"}, "locale": "fr-FR"}}
    event = RawEvent.model_validate_json(normalize(call, edge).value)
    assert event.context == {"geo": {"country": "US", "region": "California", "city": "Mountain View"}, "locale": "fr-FR"}
    unlocated = Edge(source_id="web", received_at=datetime.now(UTC), ip="10.0.0.1", user_agent=None)
    assert RawEvent.model_validate_json(normalize(call, unlocated).value).context["geo"] == {"country": "FR"}


def test_a_source_can_turn_geoip_off():
    made: list[Edge] = []

    async def app(scope, _receive, _send):
        made.append(await edge_of(Request(scope), SOURCE.model_copy(update={"geoip": False})))

    asyncio.run(
        app({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": [], "client": (GOOGLE_DNS, 1)}, None, None)
    )
    assert made[0].geo is None and made[0].ip == GOOGLE_DNS
