"""What every benchmark needs: a broker (the project's own, on spare ports), machine facts, result files."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
KAFKA_SCRIPT = REPO / "deploy" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, or the broker from deploy/kafka.sh on spare ports in a temporary directory."""
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
        return
    with tempfile.TemporaryDirectory(prefix="footfall-bench-kafka-") as state:
        env = {**os.environ, "KAFKA_STATE_DIR": state, "KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port())}
        subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True)
        try:
            yield f"127.0.0.1:{env['KAFKA_PORT']}"
        finally:
            subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, check=False)


def machine() -> dict:
    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), 0)
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    versions = {name: metadata.version(name) for name in ("faust-streaming", "aiokafka", "confluent-kafka", "clickhouse-connect", "chdb")}
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu": model,
        "python": platform.python_version(),
        "kafka": "4.4.0",
        **versions,
    }


def nearest_rank(samples: int, q: float) -> int:
    """The index, in sorted order, of the sample reported as quantile q of `samples` (nearest rank)."""
    return min(samples - 1, int(round(q * (samples - 1))))


# The load average when this benchmark process started: with the one at write_result, what else ran meanwhile.
LOAD_AT_START = os.getloadavg()


def write_result(name: str, result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    load = {"load_average": {"before": LOAD_AT_START, "after": os.getloadavg()}}
    payload = {"benchmark": name, "measured_at": datetime.now(UTC).isoformat(), "machine": machine(), **load, **result}
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    return path
