"""Where a client address is: country, region and city, looked up offline at the collector.

The data ships inside a PyPI package (plevin-db-place, read by plevin; rebuilt weekly from open sources,
see https://github.com/tn3w/plevin#sources): nothing is downloaded at run time, and upgrading the package
upgrades the data. The lookup runs on the full address, before a source's IP truncation (ingest/edge.py),
so a source that stores truncated addresses still gets the city.

The answer lands in the raw event as `context.geo` (RudderStack's name for the same enrichment; Segment's
`context.location` stays what the client sent): `{"country": "<ISO 3166-1 alpha-2>", "region": "<name>",
"city": "<name>"}`, each key only when known. Private, reserved and unknown addresses have no location.

A lookup decodes compressed blocks of the file on first use (about 1 ms cold), so answers are cached per
address: a visitor sends many events from one address. The collector asks through `locate_off_loop`: a
cached answer comes back at once, a miss is looked up on one `geoip` thread, so the event loop keeps
serving other requests meanwhile (one thread: the lookups never run concurrently with each other).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import plevin
from cachetools import LRUCache, cached

CACHE_SIZE = 65_536
_MISSING = object()
_LOOKUPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoip")


@cached(LRUCache(maxsize=CACHE_SIZE), lock=threading.Lock(), info=True)
def locate(address: str | None) -> dict[str, str] | None:
    """country / region / city of an address (as ingest.edge.recorded_ip writes it), or None. Blocks for
    about a millisecond on a cache miss: the collector calls `locate_off_loop`.

    The returned dict is shared by every caller of the cache: treat it as read-only."""
    if not address:
        return None
    try:
        found = plevin.lookup(address)
    except ValueError:  # not an address at all
        return None
    return location_of(found.place) if found.found and found.is_global else None


async def locate_off_loop(address: str | None) -> dict[str, str] | None:
    """`locate`'s answer without blocking the event loop: from the cache when it is there, else from the
    geoip thread."""
    if not address:
        return None
    with locate.cache_lock:
        known = locate.cache.get(locate.cache_key(address), _MISSING)
    if known is not _MISSING:
        return known  # type: ignore[return-value]
    return await asyncio.get_running_loop().run_in_executor(_LOOKUPS, locate, address)


def location_of(place: Any) -> dict[str, str] | None:
    if place is None or place.country is None or not place.country.code:
        return None
    location = {"country": place.country.code}
    city = place.city
    if city is not None and city.region is not None and city.region.name:
        location["region"] = city.region.name
    if city is not None and city.name:
        location["city"] = city.name
    return location


def warm() -> None:
    """Open the data file now rather than on the first request (about a second)."""
    locate.cache_clear()
    locate("8.8.8.8")
