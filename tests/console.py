"""Helpers for the console's tests: the management API + console app served on a real port, and chromium."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from collections.abc import Iterator

import httpx
import uvicorn

from api.app import create_app
from api.console import mount_console
from api.console.app import ConsoleConfig
from api.reads import ClickHouseReader
from projections.clickhouse import connect
from schemas.config import FootfallSettings
from tests.infra import free_port
from tests.pipeline import wait_until

ADMIN_KEY = "console-test-admin-key"


def console_app(settings: FootfallSettings, config: ConsoleConfig | None = None, sources: list[tuple[str, str]] | None = None):
    """`footfall api`'s app as the CLI wires it, reading this test's database (chdb in this process)."""
    app = create_app(settings, ADMIN_KEY, ClickHouseReader(connect(settings.clickhouse_dsn), settings.database))
    mount_console(app, ADMIN_KEY, settings, config, sources)
    return app


@contextlib.contextmanager
def served(app, ready_path: str | None = "/readyz") -> Iterator[str]:
    """The app under uvicorn on a free port, in a thread; yields its base URL once `ready_path` answers 200, as a
    load balancer would send traffic (the API answers 503 until it has read the topics it keeps in memory)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.started, 60, what="the API server")
        if ready_path is not None:
            wait_until(lambda: httpx.get(url + ready_path, timeout=10).status_code == 200, 120, what=f"{ready_path} of the API")
        yield url
    finally:
        server.should_exit = True
        thread.join(15)


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, "the page has no CSRF token field"
    return found.group(1)


def chromium_path() -> str:
    """Debian's chromium (`make browser` installs it); Playwright's own downloads are never used."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("chromium is not installed: `make browser` (apt-get install chromium) sets it up")
    return path
