"""GET /v1/projects/{writeKey}/settings: what analytics.js (and Segment's mobile SDKs) fetch before they
send, shaped like Segment's CDN settings. "Segment.io" is the only integration, pointed at this
collector, so `AnalyticsBrowser.load({writeKey, cdnURL: <collector>})` sends here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ingest.sources import Source

CACHE_CONTROL = "public, max-age=300"


def api_host_of(request: Request, source: Source, public_api_host: str | None) -> str:
    """`host[:port]/v1`, without the scheme, as analytics.js expects its apiHost."""
    return source.api_host or public_api_host or f"{request.headers.get('host', request.url.netloc)}/v1"


def settings_document(source: Source, api_host: str, protocol: str) -> dict[str, Any]:
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": source.write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # No client telemetry: analytics.js would otherwise post it to api.segment.io.
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
