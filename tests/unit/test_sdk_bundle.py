"""The collector serves analytics-next's standalone bundle and its chunks from the npm package `make web` installed."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.testclient import TestClient

from ingest.sdk_bundle import bundle_dir, sdk_bundle_routes
from schemas.config import FootfallSettings


def _client(assets) -> TestClient:
    return TestClient(Starlette(routes=sdk_bundle_routes(assets)))


def test_standalone_bundle_and_a_chunk_are_the_npm_packages_files():
    assets = FootfallSettings().web_assets_dir
    directory = bundle_dir(assets)
    client = _client(assets)
    response = client.get("/analytics.js/v1/any-write-key/analytics.min.js")
    assert response.status_code == 200
    assert response.content == (directory / "standalone.js").read_bytes()
    assert response.headers["content-type"].startswith("text/javascript")
    chunk = next(p for p in directory.glob("*.bundle.*.js"))
    response = client.get(f"/analytics-next/bundles/{chunk.name}")
    assert response.status_code == 200 and response.content == chunk.read_bytes()


def test_chunk_paths_cannot_leave_the_bundle_directory():
    client = _client(FootfallSettings().web_assets_dir)
    assert client.get("/analytics-next/bundles/../../package.json").status_code == 404
    assert client.get("/analytics-next/bundles/%2e%2e/%2e%2e/package.json").status_code == 404


def test_missing_package_is_a_404_that_names_the_set_up_step(tmp_path):
    response = _client(tmp_path).get("/analytics.js/v1/k/analytics.min.js")
    assert response.status_code == 404
    assert "make web" in response.text
