"""The Sources page's code samples. Pure: no I/O.

The browser snippet is Segment's own analytics.js snippet (5.2.0) as Segment documents it for a custom
domain, unchanged but for where it loads from: the collector, which serves analytics-next's standalone
bundle from the npm package (ingest/sdk_bundle.py) and its settings (ingest/cdn_settings.py). `_cdn` tells
the bundle where its chunks and settings are; `apiHost` where to send. With `page()` the snippet sends
the page view; nothing is loaded from a third party.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

SNIPPET = """<script>
  !function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet included twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track","ready","alias","debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){return function(){if(window[i].initialized)return window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){var c=document.querySelector("link[rel='canonical']");n.push({__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,r:document.referrer})}n.unshift(e);analytics.push(n);return analytics}};for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];analytics[key]=analytics.factory(key)}analytics.load=function(key,n){var t=document.createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);t.src=COLLECTOR+"/analytics.js/v1/" + key + "/analytics.min.js";var r=document.getElementsByTagName("script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n};analytics._writeKey=WRITE_KEY;analytics._cdn=COLLECTOR;analytics.SNIPPET_VERSION="5.2.0";
  analytics.load(WRITE_KEY, {integrations: {"Segment.io": {apiHost: API_HOST, protocol: PROTOCOL}}});
  analytics.page();
  }}();
</script>"""


def browser_snippet(collector_url: str, write_key: str) -> str:
    """The snippet for a site, loading analytics-next from `collector_url` and sending there."""
    parts = urlsplit(collector_url.rstrip("/"))
    values = {
        "COLLECTOR": json.dumps(f"{parts.scheme}://{parts.netloc}{parts.path}"),
        "WRITE_KEY": json.dumps(write_key),
        "API_HOST": json.dumps(f"{parts.netloc}{parts.path}/v1"),
        "PROTOCOL": json.dumps(parts.scheme or "https"),
    }
    text = SNIPPET
    for name, value in values.items():
        text = text.replace(name, value)
    return text


def server_examples(collector_url: str, write_key: str) -> list[tuple[str, str]]:
    """(title, code) for the server-side SDKs and plain HTTP."""
    url = collector_url.rstrip("/")
    return [
        (
            "Python (segment-analytics-python)",
            f"import segment.analytics as analytics\n\nanalytics.write_key = {write_key!r}\nanalytics.host = {url!r}\n"
            "analytics.identify('user-42', {'email': 'ann@example.com', 'plan': 'pro'})\n"
            "analytics.track('user-42', 'Order Completed', {'revenue': 42.5})\nanalytics.flush()",
        ),
        (
            "Node.js (@segment/analytics-node)",
            f"import {{ Analytics }} from '@segment/analytics-node'\n\n"
            f"const analytics = new Analytics({{ writeKey: {json.dumps(write_key)}, host: {json.dumps(url)} }})\n"
            "analytics.identify({ userId: 'user-42', traits: { email: 'ann@example.com' } })\n"
            "analytics.track({ userId: 'user-42', event: 'Order Completed', properties: { revenue: 42.5 } })",
        ),
        (
            "HTTP (curl)",
            f"curl -u {write_key}: -H 'Content-Type: application/json' {url}/v1/track \\\n"
            '  -d \'{"userId": "user-42", "event": "Order Completed", "properties": {"revenue": 42.5}}\'',
        ),
    ]
