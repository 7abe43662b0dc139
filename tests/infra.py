"""Real infrastructure for the tests: a Kafka broker and a ClickHouse, never mocks.

Kafka: KAFKA_BOOTSTRAP_SERVERS if set; else testcontainers when a Docker engine answers; else the
project's own broker from deploy/kafka.sh on free ports, in a temporary state directory.
ClickHouse: CLICKHOUSE_URL if set; else testcontainers when Docker answers; else chdb in a temporary
directory (one engine path per process, so the whole test session shares it; tests get their own database).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


class LocalBroker:
    """The broker from deploy/kafka.sh, with its own ports and state directory."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.port = free_port()
        self.controller_port = free_port()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_STATE_DIR": str(self.state_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([str(KAFKA_SCRIPT), "start"], env=self.env, check=True)
        self.wait_for_leaders()

    def wait_for_leaders(self, timeout_s: float = 60) -> None:
        """After a restart the broker answers before every partition has its leader back; wait for them."""
        wait_for_leaders(self.bootstrap_servers, timeout_s)

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=self.env, check=True)


@contextlib.contextmanager
def kafka_broker(tmp_dir: Path) -> Iterator[tuple[str, LocalBroker | None]]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers, None
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.4.0").with_kraft() as container:
            yield container.get_bootstrap_server(), None
        return
    broker = LocalBroker(tmp_dir / "kafka")
    broker.start()
    try:
        yield broker.bootstrap_servers, broker
    finally:
        broker.stop()


@contextlib.contextmanager
def clickhouse(tmp_dir: Path) -> Iterator[str]:
    if url := os.environ.get("CLICKHOUSE_URL"):
        yield url
        return
    if docker_available():
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:25.8") as container:
            yield container.get_connection_url().replace("clickhouse://", "http://").rsplit("/", 1)[0]
        return
    yield f"chdb://{(tmp_dir / 'clickhouse').resolve()}"


def wait_for_leaders(bootstrap_servers: str, timeout_s: float = 60) -> None:
    """Until every partition has a leader: after a restart, or just after topics were created on a busy machine."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics.values()
        if all(t.error is None and all(p.leader >= 0 and p.error is None for p in t.partitions.values()) for t in topics):
            return
        time.sleep(0.2)
    raise TimeoutError(f"partitions still without a leader after {timeout_s}s")
