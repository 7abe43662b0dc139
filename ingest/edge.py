"""What only the edge knows about an event: when it arrived, from which address, with which user agent.

The address is the connection's peer, or the client named in X-Forwarded-For when the peer is a
trusted proxy (FOOTFALL_TRUSTED_PROXIES; uvicorn's ProxyHeadersMiddleware does that rewrite before
the app sees the request). A source may ask for truncated addresses, a common legal requirement, and
for hashed email addresses (`hash_emails`: the edge carries the wish to ingest.normalize, see ingest.privacy).
Its location (ingest.geo) is looked up from the full address, before any truncation.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from functools import lru_cache

from starlette.requests import Request

from ingest.geo import locate_off_loop
from ingest.normalize import Edge
from ingest.sources import Source

IPV4_KEPT_BITS = 24  # the last octet is zeroed
IPV6_KEPT_BITS = 48  # the last 80 bits are zeroed


@lru_cache(maxsize=8192)
def recorded_ip(host: str | None, truncate: bool) -> str | None:
    """The address as stored: None when it is not an IP address (a unix socket, a proxy's garbage)."""
    try:
        address = ipaddress.ip_address(host) if host else None
    except ValueError:
        return None
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # an IPv4 client of a dual-stack socket
    if not truncate:
        return str(address)
    kept = IPV4_KEPT_BITS if address.version == 4 else IPV6_KEPT_BITS
    return str(ipaddress.ip_network(f"{address}/{kept}", strict=False).network_address)


async def edge_of(request: Request, source: Source) -> Edge:
    """The edge facts of a request; its location is looked up off the event loop (ingest.geo)."""
    host = request.client.host if request.client else None
    return Edge(
        source_id=source.id,
        received_at=datetime.now(UTC),
        ip=recorded_ip(host, source.truncate_ip),
        user_agent=request.headers.get("user-agent"),
        hash_emails=source.hash_emails,
        geo=await locate_off_loop(recorded_ip(host, False)) if source.geoip else None,  # the full address: truncation would move the city
    )
