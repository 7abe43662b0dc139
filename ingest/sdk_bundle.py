"""analytics-next's standalone bundle, served by the collector so a site's snippet loads nothing from a third party.

The unchanged Segment snippet loads `<cdn>/analytics.js/v1/<writeKey>/analytics.min.js`; the bundle then loads
its lazy chunks from `<cdn>/analytics-next/bundles/` and its settings from `<cdn>/v1/projects/<writeKey>/settings`
(ingest/cdn_settings.py). With `analytics._cdn` set to the collector's URL, all three come from here. The files
are the npm package `@segment/analytics-next` as `make web` installed it (web/package-lock.json).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ingest.responses import Refusal

CACHE_CONTROL = "public, max-age=3600"


def bundle_dir(web_assets_dir: Path) -> Path:
    return web_assets_dir / "@segment" / "analytics-next" / "dist" / "umd"


def sdk_bundle_routes(web_assets_dir: Path) -> list:
    """Routes for the standalone script and its chunks; a 404 naming `make web` when the package is missing."""
    directory = bundle_dir(web_assets_dir)

    async def standalone(_request: Request) -> Response:
        path = directory / "standalone.js"
        if not path.is_file():
            return Refusal.of(404, "path", "not_installed", "analytics-next is not installed here; run `make web`").response()
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": CACHE_CONTROL})

    routes: list = [Route("/analytics.js/v1/{writeKey}/analytics.min.js", standalone, methods=["GET", "HEAD"])]
    if directory.is_dir():
        routes.append(Mount("/analytics-next/bundles", app=StaticFiles(directory=directory), name="analytics-next"))
    return routes
