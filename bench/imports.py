"""CSV import throughput against a plain `csv` read of the same file, in the same run.

    make bench-imports          (or: .venv/bin/python -m bench.imports [--rows 200000] [--rounds 3])

The file: users with user_id, email, first and last name, company, city, a plan (an enum definition) and
an age (an integer definition with a minimum), 2 % of the rows broken (a bad email, a plan not among the
options, an age below the minimum). Per round, interleaved:

  csv-read   csv.reader over the file, counting rows: the baseline (nothing is checked or sent)
  import     api/imports.py as `footfall import` runs it: every row checked, looked up a chunk at a time
             (ClickHouse: chdb in this process), each good row's create command (and identity claim) sent
             to Kafka and acknowledged (acks=all)
  re-import  the same file again once the first import's commands are marked applied: nothing is sent

Peak memory is the process's maximum RSS growth over the runs: streaming keeps it flat as the file grows.
Starts its own broker unless KAFKA_BOOTSTRAP_SERVERS is set; writes bench/results/imports.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from api.commands import CommandBus
from api.import_rows import ImportOptions
from api.imports import CHUNK_ROWS, CsvImport, ImportReport
from api.reads import ClickHouseReader
from bench.common import broker, write_result
from footfall.topics import ensure_topics
from projections.clickhouse import connect, migrate
from schemas.config import FootfallSettings
from schemas.properties import BUILT_IN, PropertyDefinition

DEFINITIONS = {
    **BUILT_IN,
    "plan": PropertyDefinition(name="plan", type="enum", options=["free", "pro", "team"]),
    "age": PropertyDefinition(name="age", type="integer", minimum=18, maximum=130),
}
BAD_SHARE = 0.02


def write_file(path: Path, rows: int, seed: int = 16) -> int:
    """The CSV; returns how many rows are broken on purpose."""
    rng, broken = random.Random(seed), 0
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["user_id", "email", "first_name", "last_name", "company", "city", "plan", "age"])
        for n in range(rows):
            email, plan, age = f"user{n}@example.com", rng.choice(["free", "pro", "team"]), str(rng.randrange(18, 90))
            if rng.random() < BAD_SHARE:
                broken += 1
                kind = rng.randrange(3)
                email, plan, age = (
                    ("not-an-address", plan, age) if kind == 0 else (email, "gold", age) if kind == 1 else (email, plan, "12")
                )
            writer.writerow([f"u-{n}", email, f"First{n % 500}", f"Last{n % 777}", f"Company {n % 97}", "Berlin", plan, age])
    return broken


def plain_read(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with open(path, newline="") as text:
        reader = csv.reader(text)
        next(reader)
        count = sum(1 for _ in reader)
    return count, time.perf_counter() - started


async def run_import(
    path: Path, settings: FootfallSettings, reader: ClickHouseReader, bus: CommandBus, errors: Path
) -> tuple[ImportReport, float, float]:
    """The report, the wall-clock seconds and the CPU seconds of the process (every thread: chdb's and the
    Kafka client's too), which a busy machine does not inflate the way it does the wall clock."""
    report = ImportReport(str(uuid.uuid4()))
    job = CsvImport(report, ImportOptions(), DEFINITIONS, reader.rows, bus.send, settings.topics, errors)
    started, cpu_started = time.perf_counter(), time.process_time()
    with open(path, "rb") as binary:
        await job.run(binary)
    return report, time.perf_counter() - started, time.process_time() - cpu_started


def mark_applied(client, database: str, report_errors: Path, path: Path) -> int:
    """What the projector does once it applied the commands: record their ids (so a re-run sends nothing)."""
    from api.import_rows import plan_columns, read_row

    with open(path, newline="") as text:
        reader = csv.reader(text)
        plan = plan_columns(next(reader), ImportOptions(), DEFINITIONS)
        ids = [
            row.command_id
            for number, cells in enumerate(reader, start=2)
            if not isinstance(row := read_row(number, cells, plan, ImportOptions(), DEFINITIONS), list)
        ]
    for start in range(0, len(ids), 50_000):
        client.insert(f"{database}.user_commands", [[i] for i in ids[start : start + 50_000]], column_names=["command_id"])
    return len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="footfall-bench-imports-"))
    path = work / "users.csv"
    broken = write_file(path, args.rows)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    samples: dict[str, list[float]] = {"csv-read": [], "import": [], "re-import": []}
    cpu_us_per_row: dict[str, list[float]] = {"import": [], "re-import": []}
    reports = []
    with broker() as bootstrap:
        client = connect(f"chdb://{work / 'clickhouse'}")
        for round_number in range(args.rounds):
            settings = FootfallSettings(
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=f"bench-imports-{uuid.uuid4().hex[:8]}",
                database=f"bench_import_{round_number}",
            )
            ensure_topics(bootstrap, settings.topics.all())
            migrate(client, settings.database)
            reader = ClickHouseReader(client, settings.database)
            bus = CommandBus(bootstrap)
            try:
                count, seconds = plain_read(path)
                samples["csv-read"].append(count / seconds)
                report, seconds, cpu = asyncio.run(run_import(path, settings, reader, bus, work / "errors.csv"))
                samples["import"].append(report.rows_read / seconds)
                cpu_us_per_row["import"].append(cpu / report.rows_read * 1e6)
                mark_applied(client, settings.database, work / "errors.csv", path)
                again, seconds, cpu = asyncio.run(run_import(path, settings, reader, bus, work / "errors-again.csv"))
                samples["re-import"].append(again.rows_read / seconds)
                cpu_us_per_row["re-import"].append(cpu / again.rows_read * 1e6)
            finally:
                bus.close()
            reports.append({"first": report.as_json(), "again": again.as_json()})
            print(
                f"round {round_number + 1}: csv read {samples['csv-read'][-1]:,.0f} rows/s, import {samples['import'][-1]:,.0f} rows/s "
                f"({report.accepted:,} accepted, {report.rejected:,} refused), re-import {samples['re-import'][-1]:,.0f} rows/s "
                f"({again.unchanged:,} unchanged, {again.created + again.updated} sent)",
                flush=True,
            )
    peak_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    median = {name: statistics.median(values) for name, values in samples.items()}
    results = {
        "command": "make bench-imports",
        "rows": args.rows,
        "broken_rows": broken,
        "file_bytes": path.stat().st_size,
        "rounds": args.rounds,
        "chunk_rows": CHUNK_ROWS,
        "median_rows_per_s": median,
        "import_ratio_to_csv_read": median["import"] / median["csv-read"],
        "reimport_ratio_to_csv_read": median["re-import"] / median["csv-read"],
        "median_cpu_us_per_row": {name: statistics.median(values) for name, values in cpu_us_per_row.items()},
        "peak_rss_growth_mib": peak_growth_mib,
        "reports": reports,
        "samples": samples,
    }
    out = write_result("imports", results)
    print(
        f"import {median['import']:,.0f} rows/s = {results['import_ratio_to_csv_read']:.3f}× a plain csv read ({median['csv-read']:,.0f} rows/s); "
        f"re-import {median['re-import']:,.0f} rows/s; peak RSS growth {peak_growth_mib:.0f} MiB; wrote {out}"
    )


if __name__ == "__main__":
    main()
