"""The management API's benchmark: writes, write-to-readable, and the people search over 1,000,000 persons.

    make bench-api        (or: .venv/bin/python -m bench.api [--persons 1000000] [--writes 2000])

One process: `footfall api`'s app on uvicorn (a thread), the projector (a thread) and the load (httpx, 16
connections), on the embedded ClickHouse and the project's own broker. Each figure has its floor, measured in
the same run:
  writes        POST /api/v1/users (validate, two 409 lookups, two commands acknowledged by Kafka): writes/s, p99
                floor: the same two records sent straight through the CommandBus, as concurrently
  readable      PATCH ?wait=true (until the projector applied it) p50/p99, one at a time
                floor: the same PATCH without wait (answered at Kafka's acknowledgement)
  search        GET /api/v1/users over --persons synthetic persons: email prefix, a name, a tag, a property,
                sorted and a second page by cursor: p50/p99 per kind
                floor: the same SQL with the same parameters run directly on the client (no HTTP, no API)
Writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from api.app import ApiConfig, create_app
from api.commands import CommandBus, Record
from api.people import PROFILE_COLUMNS
from api.reads import ClickHouseReader
from api.user_query import ListQuery
from bench.common import broker, free_port, write_result
from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from projections.projector import Projector
from schemas.config import FootfallSettings

ADMIN_KEY = "bench-admin-key-" + "k" * 16
CONCURRENCY = 16


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies_s: list[float], elapsed_s: float | None = None) -> dict:
    result = {
        "n": len(latencies_s),
        "p50_ms": round(percentile(latencies_s, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies_s, 0.99) * 1000, 2),
    }
    if elapsed_s:
        result["per_s"] = round(len(latencies_s) / elapsed_s, 1)
    return result


def load_persons(client, database: str, count: int) -> float:
    """count synthetic persons written by ClickHouse itself (INSERT ... SELECT FROM numbers)."""
    started = time.perf_counter()
    client.command(
        f"INSERT INTO {database}.persons (person_id, visitor_number, visitor_alias, is_identified, is_contact, email, name, "
        "email_domain, properties, tags, first_seen, last_seen, session_count, event_count, status, _state, version, is_deleted) "
        "SELECT toString(generateUUIDv4(number)), number + 1, concat('Visitor ', toString(number + 1)), number % 3 != 0, number % 3 != 0, "
        "if(number % 3 != 0, concat('user', toString(number), '@example', toString(number % 100), '.com'), ''), "
        "concat(['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara'][number % 5 + 1], ' ', toString(number)), "
        "if(number % 3 != 0, concat('example', toString(number % 100), '.com'), ''), "
        "concat('{\"plan\":\"', ['free', 'pro', 'team'][number % 3 + 1], '\",\"seats\":', toString(number % 50), '}'), "
        "if(number % 10 = 0, ['vip'], []), now64(3) - toIntervalSecond(number), now64(3) - toIntervalSecond(number % 86400), "
        "number % 7, number % 100, if(number % 20 = 0, 'disabled', 'active'), '{}', 1, 0 FROM numbers({n:UInt64})",
        parameters={"n": count},
    )
    return time.perf_counter() - started


class Server:
    """uvicorn serving the app in a thread of its own (its own event loop)."""

    def __init__(self, app, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *_):
        self.server.should_exit = True
        self.thread.join(10)


async def timed_requests(client: httpx.AsyncClient, requests: list[tuple[str, str, dict]], concurrency: int) -> tuple[list[float], float]:
    queue = list(reversed(requests))
    latencies: list[float] = []

    async def worker():
        while queue:
            method, url, kwargs = queue.pop()
            started = time.perf_counter()
            response = await client.request(method, url, **kwargs)
            latencies.append(time.perf_counter() - started)
            assert response.status_code < 300, response.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def floor_sends(bus: CommandBus, settings: FootfallSettings, count: int) -> tuple[list[float], float]:
    body = b'{"kind":"create","command_id":"x","person_id":"p","at":"2026-01-01T00:00:00Z"}'
    records = [Record(settings.topics.identity_commands.name, "k", body), Record(settings.topics.user_commands.name, "p", body)]
    queue = list(range(count))
    latencies: list[float] = []

    async def worker():
        while queue:
            queue.pop()
            started = time.perf_counter()
            await bus.send(records)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--readable", type=int, default=100)
    parser.add_argument("--searches", type=int, default=40, help="requests per search kind")
    args = parser.parse_args()
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="footfall-bench-api-") as data:
        run_id = uuid.uuid4().hex[:8]
        settings = FootfallSettings(
            kafka_bootstrap_servers=bootstrap,
            clickhouse_url=f"chdb://{Path(data, 'clickhouse')}",
            topic_prefix=f"bench-api-{run_id}",
            database=f"bench_api_{run_id}",
            data_dir=Path(data),
            batch_max_seconds=0.1,
        )
        ensure_topics(bootstrap, settings.topics.all())
        client = connect(settings.clickhouse_dsn)
        migrate(client, settings.database)
        load_s = load_persons(client, settings.database, args.persons)
        print(f"{args.persons:,} persons loaded in {load_s:.1f}s")
        bus = CommandBus(bootstrap)
        reader = ClickHouseReader(connect(settings.clickhouse_dsn), settings.database)
        app = create_app(settings, ADMIN_KEY, reader, bus=bus, config=ApiConfig(wait_timeout_s=30))
        projector = Projector(settings, connect(settings.clickhouse_dsn))
        projecting = threading.Thread(target=projector.run, name="projector", daemon=True)
        projecting.start()
        port = free_port()
        result: dict = {
            "command": "make bench-api",
            "persons": args.persons,
            "concurrency": CONCURRENCY,
            "persons_load_s": round(load_s, 1),
        }
        with Server(app, port):

            async def run() -> None:
                headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60, limits=httpx.Limits(max_connections=CONCURRENCY)
                ) as http:
                    floor, floor_s = await floor_sends(bus, settings, args.writes)
                    creates = [
                        (
                            "POST",
                            "/api/v1/users",
                            {
                                "json": {
                                    "user_id": f"bench-{run_id}-{n}",
                                    "email": f"b{n}-{run_id}@bench.example",
                                    "properties": {"plan": "pro"},
                                }
                            },
                        )
                        for n in range(args.writes)
                    ]
                    writes, writes_s = await timed_requests(http, creates, CONCURRENCY)
                    result["writes"] = {**summary(writes, writes_s), "floor": summary(floor, floor_s)}
                    result["writes"]["ratio_to_floor"] = round(result["writes"]["per_s"] / result["writes"]["floor"]["per_s"], 3)
                    print(f"writes: {result['writes']}")

                    target = (await http.get("/api/v1/users", params={"limit": 1})).json()["users"][0]["person_id"]

                    def patch(n: int, wait: bool, target: str = target) -> tuple[str, str, dict]:
                        return "PATCH", f"/api/v1/users/{target}", {"json": {"set": {"n": n}}, "params": {"wait": "true"} if wait else {}}

                    unwaited, _ = await timed_requests(http, [patch(n, False) for n in range(args.readable)], 1)
                    waited, _ = await timed_requests(http, [patch(n, True) for n in range(args.readable)], 1)
                    result["readable"] = {**summary(waited), "floor": summary(unwaited)}
                    print(f"write to readable: {result['readable']}")

                    kinds = {
                        "email_prefix": {"q": "user12345"},
                        "name": {"q": "Grace 4242"},
                        "tag_sorted": {"tag": "vip", "sort": "-last_seen", "limit": 50},
                        "property": {"properties.plan": "team", "status": "active", "limit": 50},
                        "list_default": {"limit": 50},
                    }
                    first = (await http.get("/api/v1/users", params={"limit": 50, "sort": "-event_count"})).json()
                    kinds["second_page"] = {"limit": 50, "sort": "-event_count", "cursor": first["next_cursor"]}
                    result["search"] = {}
                    for kind, params in kinds.items():
                        latencies, _ = await timed_requests(http, [("GET", "/api/v1/users", {"params": params})] * args.searches, 4)
                        query_params = {k: v for k, v in params.items() if not k.startswith("properties.")}
                        props = {k.removeprefix("properties."): v for k, v in params.items() if k.startswith("properties.")}
                        sql, parameters = ListQuery(**query_params, properties=props).check().sql(PROFILE_COLUMNS)
                        direct = []
                        for _ in range(args.searches):
                            started = time.perf_counter()
                            await reader.rows(sql, parameters)
                            direct.append(time.perf_counter() - started)
                        result["search"][kind] = {
                            **summary(latencies),
                            "floor": summary(direct),
                            "p99_ratio_to_floor": round(percentile(latencies, 0.99) / percentile(direct, 0.99), 2),
                        }
                        print(f"search {kind}: {result['search'][kind]}")

            asyncio.run(run())
        projector.stop()
        projecting.join(30)
        bus.close()
    result["measured"] = datetime.now(UTC).isoformat()
    print(f"wrote {write_result('api', result)}")


if __name__ == "__main__":
    main()
