"""Segment evaluation cost: one evaluator run per segment shape over generated persons and events (chdb, no Kafka).

    make bench-segments            (or: .venv/bin/python -m bench.segments [--persons 200000] [--events 2000000])

The data is bench.console's (INSERT … SELECT FROM numbers(): a tenth identified with a plan, some tagged, events
over 90 days). For each shape: the compiled query (schemas/segments.py) returning every member's id, and the
diff against the published state (`transitions`) for a first run (everyone enters). The baseline, measured in
the same run, is `SELECT person_id FROM persons FINAL`: reading every live person's id, the floor of any query
that decides over all persons. Reports medians of --rounds runs and the ratio to the baseline; the cost at
1,000,000 persons is extrapolated linearly from the measured size (every shape scans persons, behaviour also the
window's events). Writes bench/results/segments.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import write_result
from bench.console import fill
from projections.clickhouse import connect, migrate
from schemas.conditions import condition_adapter
from schemas.segments import compile_segment, transitions

SHAPES = {
    "property (plan = pro, identified)": {
        "kind": "group",
        "conditions": [
            {"kind": "property", "property": "plan", "operator": "equals", "value": "pro"},
            {"kind": "identity", "identity": "identified"},
        ],
    },
    "tag or status": {
        "kind": "group",
        "match": "any",
        "conditions": [{"kind": "tag", "tag": "newsletter"}, {"kind": "status", "status": "disabled"}],
    },
    "behaviour (Added to Cart ≥ 2 in 30 days)": {
        "kind": "group",
        "conditions": [{"kind": "event", "event": "Added to Cart", "operator": "at_least", "count": 2, "days": 30}],
    },
    "mixed (nested, behaviour + properties + last seen)": {
        "kind": "group",
        "conditions": [
            {"kind": "last_seen", "days": 30},
            {
                "kind": "group",
                "match": "any",
                "conditions": [
                    {"kind": "property", "property": "$email_domain", "operator": "ends_with", "value": "7.com"},
                    {"kind": "event", "event": "Signed Up", "operator": "at_most", "count": 0, "days": 60},
                ],
            },
        ],
    },
}


def timed(run, rounds: int) -> tuple[float, Any]:
    durations, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="footfall-bench-segments-") as data_dir:
        client = connect(f"chdb://{data_dir}/clickhouse")
        database = "bench_segments"
        migrate(client, database)
        fill_seconds = fill(client, database, args.persons, args.events)

        def query(sql: str, parameters: dict) -> list:
            return client.query(sql.replace("{db}", database), parameters=parameters).result_rows

        baseline_ms, everyone = timed(lambda: query("SELECT person_id FROM {db}.persons FINAL", {}), args.rounds)
        shapes = {}
        now = datetime.now(UTC)
        for name, raw in SHAPES.items():
            compiled = compile_segment(condition_adapter.validate_python(raw), {}, now)
            query_ms, rows = timed(lambda compiled=compiled: query(compiled.members_sql(), compiled.parameters), args.rounds)
            members = {row[0] for row in rows}
            diff_ms, _ = timed(lambda members=members: transitions("bench", members, {}, set(), now), args.rounds)
            scale = 1_000_000 / args.persons
            shapes[name] = {
                "members": len(members),
                "query_ms": round(query_ms, 1),
                "transitions_ms": round(diff_ms, 1),
                "ratio_to_baseline": round(query_ms / baseline_ms, 2),
                "at_1m_persons_ms": round((query_ms + diff_ms) * scale),
            }
            print(f"{name}: {shapes[name]}")
    result = {
        "setup": {
            "persons": args.persons,
            "events": args.events,
            "rounds": args.rounds,
            "engine": "chdb (embedded)",
            "fill_seconds": fill_seconds,
        },
        "baseline": {"what": "SELECT person_id FROM persons FINAL", "ms": round(baseline_ms, 1), "persons": len(everyone)},
        "shapes": shapes,
    }
    print(f"wrote {write_result('segments', result)}")


if __name__ == "__main__":
    main()
