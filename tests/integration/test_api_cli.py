"""`footfall api` as `footfall run` starts it: on the embedded engine it reads through the projector's read API
(the projector owns the data directory), its writes are commands the projector applies, and it refuses to
start with an admin key that is also a write key."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from footfall.supervisor import settings_env
from footfall.topics import ensure_topics
from tests.infra import free_port
from tests.pipeline import footfall_process, tail, wait_until

pytestmark = pytest.mark.integration
KEY = "cli-admin-key-" + "z" * 20


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_footfall_api_reads_through_the_projectors_read_api_on_the_embedded_engine(settings, tmp_path):
    embedded = settings.model_copy(update={"clickhouse_url": f"chdb://{tmp_path / 'own-clickhouse'}", "read_api_port": free_port()})
    ensure_topics(embedded.kafka_bootstrap_servers, embedded.topics.all())
    port = free_port()
    env = {"FOOTFALL_ADMIN_KEY": KEY, "FOOTFALL_API_PORT": str(port)}
    logs = tmp_path / "logs"
    with footfall_process("projector", embedded, logs, **env) as projector:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{embedded.read_api_port}/healthz"), 120, what="the projector's read API", watch=(projector,)
        )
        with footfall_process("api", embedded, logs, **env) as api:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: answers(f"{base}/healthz"), 60, what="footfall api", watch=(api,))
            wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 60, what="/readyz", watch=(api,))
            assert httpx.get(f"{base}/readyz", timeout=10).json() == {"status": "ready"}
            auth = {"Authorization": f"Bearer {KEY}"}
            assert httpx.get(f"{base}/api/v1/users", timeout=10).status_code == 401
            assert httpx.get(f"{base}/api/v1/users", headers=auth, timeout=30).json() == {"users": [], "next_cursor": None}
            created = httpx.post(
                f"{base}/api/v1/users", json={"email": "cli@example.com", "properties": {"plan": "pro"}}, headers=auth, timeout=30
            )
            assert created.status_code == 202, created.text
            command = created.json()["command_id"]
            wait_until(
                lambda: httpx.get(f"{base}/api/v1/commands/{command}", headers=auth, timeout=10).status_code == 200,
                60,
                what="the create applied, read through the read API",
                watch=(api, projector),
            )
            user = httpx.get(f"{base}/api/v1/users/{created.json()['person_id']}", headers=auth, timeout=10).json()
            assert user["email"] == "cli@example.com" and user["properties"]["plan"] == "pro"
            assert httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()["info"]["title"] == "footfall management API"
        assert "cli@example.com" not in tail(logs / "api.log", 200) and KEY not in tail(logs / "api.log", 200)


def test_footfall_api_refuses_an_admin_key_that_is_a_write_key(settings):
    env = settings_env(settings, FOOTFALL_ADMIN_KEY="shared-key", FOOTFALL_WRITE_KEYS="shared-key=web", FOOTFALL_API_PORT=str(free_port()))
    finished = subprocess.run([sys.executable, "-m", "footfall", "api"], env=env, capture_output=True, timeout=120)
    assert finished.returncode == 1 and b"also a write key" in finished.stderr
