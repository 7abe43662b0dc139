"""Regenerate BENCHMARKS.md from bench/results/*.json (the machine-readable results of `make bench`)."""

from __future__ import annotations

import statistics

import orjson

from bench.common import REPO, RESULTS_DIR, nearest_rank

TARGET = REPO / "BENCHMARKS.md"


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return orjson.loads(path.read_bytes()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def collector_section(r: dict) -> list[str]:
    rps = r["median_requests_per_s"]
    return [
        "## Collector (`make bench-collector`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. {r['setup']['server']} pinned to CPU {r['setup']['server_cpu']}; "
        f"{r['setup']['load_generator']} and the broker on CPU {r['setup']['load_cpu']}; median of {r['setup']['rounds']} interleaved rounds.",
        "The baseline is a null ASGI app on the same server stack and load generator, answering the same bodies.",
        *load_lines(r),
        "",
        "| scenario | collector | null app (baseline) | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| single-event requests/s per worker | {rps['collector-single']:,.0f} | {rps['null-single']:,.0f} | "
        f"{r['single_ratio_to_null']:.2f}× | ≥ 0.6× ({verdict(r['single_ratio_to_null'] >= 0.6)}) |",
        f"| batch (100 events) events/s per worker | {r['batch_events_per_s_per_worker']:,.0f} | "
        f"{rps['null-batch'] * r['setup']['batch_events']:,.0f} (requests × 100) | {r['batch_ratio_to_null']:.3f}× | "
        f"≥ 100,000 events/s ({verdict(r['batch_events_per_s_per_worker'] >= 100_000)}) |",
        *(
            [
                f"| floor: the null app + the collector's KafkaWriter, 200 after Kafka's ack (no parsing) | {rps['durable-single']:,.0f} | "
                f"{rps['null-single']:,.0f} | {r['durable_floor_ratio_to_null']:.2f}× | — |"
            ]
            if "durable-single" in rps
            else []
        ),
        *(
            [
                f"| floor: batches split into calls, in envelopes, 200 after Kafka's ack (no validation) | "
                f"{r['durable_batch_floor_events_per_s']:,.0f} events/s | {rps['null-batch'] * r['setup']['batch_events']:,.0f} | "
                f"{rps['durable-batch'] / rps['null-batch']:.3f}× | — |"
            ]
            if "durable-batch" in rps
            else []
        ),
        "",
        'The floor rows are what "200 means durable" costs before any of the collector\'s own work: the gap between them and the',
        "collector is parsing, validation, enrichment and routing, all Python.",
        *budget_lines(r),
        *geoip_lines(r),
        "",
        *flush_window_lines(r),
        f"Every collector answer was 2xx ({r['non_2xx_answers']} others); Kafka held {r['raw_events_in_kafka']:,} raw events after the run"
        + (
            f" in {r['raw_records_in_kafka']:,} records (envelopes: {r['raw_events_in_kafka'] / r['raw_records_in_kafka']:.1f} events per record)"
            if r.get("raw_records_in_kafka")
            else ""
        )
        + ", each acknowledged by the broker (acks=all) before its 200.",
        "",
    ]


def _rank_from_top(requests: int, q: float) -> str:
    """Which request, counted from the slowest, bench.console.percentile reports as quantile q of `requests`."""
    rank = requests - nearest_rank(requests, q)
    return {1: "the slowest", 2: "the second-slowest", 3: "the third-slowest"}.get(rank, f"number {rank} from the slowest")


def load_lines(r: dict) -> list[str]:
    """The machine's load average around the run: on a shared machine, what else competed for the 2 cores."""
    load = r.get("load_average")
    if not load:
        return []
    before, after = (", ".join(f"{x:.1f}" for x in load[when]) for when in ("before", "after"))
    note = (
        " **The machine was busy with other work: absolute figures are far below a quiet run's; compare ratios.**"
        if max(load["after"]) > 4
        else ""
    )
    return [f"Load average (1, 5, 15 min) before the run {before}, after {after}.{note}"]


def flush_window_lines(r: dict) -> list[str]:
    """What the flush window adds to the 200's latency, against the same collector without one."""
    window = r.get("flush_window")
    if not window:
        return []
    rps = r["median_requests_per_s"]
    rows = []
    for load, connections in (("full", window["full_connections"]), ("light", window["light_connections"])):
        cost = window[load]
        rows.append(
            f"| {load} ({connections} connections) | {cost['window_ms']['p50']:.2f} ms | {cost['no_window_ms']['p50']:.2f} ms | "
            f"{cost['added_ms']['p50']:+.2f} ms | {cost['window_ms']['p99']:.2f} ms | {cost['no_window_ms']['p99']:.2f} ms | {cost['added_ms']['p99']:+.2f} ms |"
        )
    ms = window["seconds"] * 1000
    return [
        "",
        f"**The flush window.** Accepted events wait up to {ms:g} ms (`FOOTFALL_COLLECTOR_FLUSH_SECONDS`, the default) for other requests' events "
        "bound for the same raw partition, and go as one envelope. What that adds to a single-event request's 200, against the same "
        "collector with a window of 0 (only requests handled at the same moment share), wrk's latency, median of the rounds:",
        "",
        "| load | p50 with window | p50 without | added | p99 with | p99 without | added |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Throughput at full load: {rps['collector-single']:,.0f} requests/s with the window, {rps['collector-single-no-window']:,.0f} without "
        f"({rps['collector-single'] / rps['collector-single-no-window']:.2f}×). At light load the null app answers in "
        f"{statistics.median(s['p50_ms'] for s in r['samples']['light-null-single']):.2f} ms (p50): the floor under both.",
        "",
    ]


def geoip_lines(r: dict) -> list[str]:
    """What locating the client address (ingest/geo.py) costs: the collector behind a proxy with GeoIP on and off."""
    if "geoip_ratio" not in r:
        return []
    rps, lookups = r["median_requests_per_s"], r["geoip_lookups"]
    return [
        "",
        "GeoIP (country, region, city of the client address, ingest/geo.py): the collector behind a trusted proxy, each",
        f"single-event body with its own public X-Forwarded-For address ({lookups['addresses']:,} addresses, round robin):",
        "",
        "| scenario | GeoIP on | GeoIP off (baseline) | ratio |",
        "| --- | --- | --- | --- |",
        f"| single-event requests/s per worker | {rps['xff-geo']:,.0f} | {rps['xff-nogeo']:,.0f} | {r['geoip_ratio']:.2f}× |",
        "",
        f"The lookup alone, in one process: {lookups['cold_lookups_per_s']:,.0f} lookups/s for addresses seen for the first time, "
        f"{lookups['cached_lookups_per_s']:,.0f}/s from the per-address cache ({lookups['located']:,} of {lookups['addresses']:,} "
        "random public addresses located). A visitor sends many events from one address, so most lookups are cache hits.",
    ]


def budget_lines(r: dict) -> list[str]:
    """How much time per request (single) and per event (batch) the targets leave for the collector's own work."""
    rps = r["median_requests_per_s"]
    if "durable-single" not in rps or "durable-batch" not in rps:
        return []

    def us(per_s: float) -> float:
        return 1e6 / per_s

    single_budget = us(0.6 * rps["null-single"]) - us(rps["durable-single"])
    single_spent = us(rps["collector-single"]) - us(rps["durable-single"])
    batch_budget = us(100_000) - us(r["durable_batch_floor_events_per_s"])
    batch_spent = us(r["batch_events_per_s_per_worker"]) - us(r["durable_batch_floor_events_per_s"])
    return [
        "",
        f"What the targets leave for the collector's own work (authentication, parsing, validation, enrichment) on top of the floors: "
        f"{single_budget:.1f} µs per single-event request (it spends {single_spent:.0f} µs) and {batch_budget:.2f} µs per batched event "
        f"(it spends {batch_spent:.1f} µs). A budget near or below zero means no collector that validates each event before its 200",
        "can meet the target on this machine, where the broker shares the 2 cores with the server and wrk.",
    ]


def processor_rows(r: dict, floor_ok: bool) -> list[str]:
    """The scenario table: wall-clock events/s, and (when measured) events per CPU second of the process, which
    is what one dedicated core gives whatever else the shared machine runs."""
    cpu = r.get("per_cpu_second")
    rows = [("bare consume-and-produce loop (baseline)", r["bare_loop_events_per_s"], "bare_loop")]
    if floor_ok:
        rows.append(("floor: a faust agent taking the same batches and doing nothing", r["faust_floor_events_per_s"], "faust_floor"))
    rows += [
        (
            "sessionizer (until every raw record is committed, i.e. its outputs and state are out)",
            r["sessionizer_events_per_s"],
            "sessionizer",
        ),
        (
            "sessionizer + identity (until every event is stamped in `enriched`)",
            r["sessionizer_and_identity_events_per_s"],
            "sessionizer_and_identity",
        ),
    ]
    bare = r["bare_loop_events_per_s"]
    if not cpu:
        return [
            "| scenario | events/s per worker | ratio to the bare loop |",
            "| --- | --- | --- |",
            *[f"| {name} | {rate:,} | {rate / bare:.3f}× |" for name, rate, _ in rows],
        ]
    return [
        "| scenario | events/s per worker (wall clock) | ratio | events per CPU second of the process | ratio |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {name} | {rate:,} | {rate / bare:.3f}× | {cpu[key]:,} | {cpu[key] / cpu['bare_loop']:.3f}× |" for name, rate, key in rows],
    ]


def processors_section(r: dict) -> list[str]:
    per_record = r.get("events_per_record", 1)
    floor_ok = "faust_floor_events_per_s" in r
    target = 20_000
    met = r["sessionizer_events_per_s"] >= target
    cpu = r.get("per_cpu_second")
    lines = [
        "## Stream processors (`make bench-processors`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. {r['events']:,} raw events of {r['devices']:,} devices (Zipf-skewed), "
        f"{r['partitions']} partitions, {r['workers']} worker, "
        + (
            f"in {r['records']:,} envelopes of up to {per_record} events per partition (as the collector writes them). "
            if per_record > 1
            else "one event per record. "
        )
        + "Every row runs over the same records; the baseline is a bare aiokafka consume-and-produce loop (each record out "
        "as it came in) on the same transport and broker."
        + (
            f" The worker takes batches of up to {r['batch_max_records']:,} records and handles their events in slices of at most "
            f"{r['slice_events']:,}, yielding to the event loop between slices."
            if "slice_events" in r
            else ""
        ),
        "",
        *processor_rows(r, floor_ok),
        "",
    ]
    if "sessionize_step_us_per_event" in r:
        lines += [
            f"Per-event Python work of the sessionize step, in-process on the same records (reading the envelopes, sessionizing, identity "
            f"commands, serialising and enveloping every output): **{r['sessionize_step_us_per_event']} µs of CPU per event** "
            f"(target ≤ 45 µs: {verdict(r['sessionize_step_us_per_event'] <= 45)}). In the same run, validating each event with pydantic "
            f"alone, which the processors no longer do (the collector did), cost {r['pydantic_validation_us_per_event']} µs.",
            "",
        ]
    if "load_average_at_end" in r:
        busy = max(r.get("load_average_at_start", 0), r["load_average_at_end"]) > 2
        lines += [
            "Conditions: the machine's 1-minute load average was "
            + (f"{r['load_average_at_start']} when this run started and " if "load_average_at_start" in r else "")
            + f"{r['load_average_at_end']} when it ended"
            + (
                " (other engineers' test runs shared its 2 cores), so absolute figures are far below what an idle "
                "machine gives and only the ratios within this run compare."
                if busy
                else ": the run had the machine to itself."
            ),
            "",
        ]
    if "where_the_time_goes" in r:
        lines += [f"Where the sessionize step's time goes (cProfile, same records): {r['where_the_time_goes']}.", ""]
    lines += [
        f"Sessionizer state: {r['state_bytes_per_active_key']:,} bytes per active device key (JSON, dedup memory capped at 256 message ids per session).",
        f"Target: {target:,} events/s per worker — {verdict(met)} on the wall clock"
        + (
            f"; per CPU second of the worker (one dedicated core) {cpu['sessionizer']:,} — {verdict(cpu['sessionizer'] >= target)}."
            if cpu
            else "."
        ),
    ]
    if not met and floor_ok and cpu and "sessionize_step_us_per_event" in r:
        worker_us, step_us, floor_us = 1e6 / cpu["sessionizer_and_identity"], r["sessionize_step_us_per_event"], 1e6 / cpu["faust_floor"]
        lines += [
            "",
            f"Where a worker's CPU goes, from the same run: {worker_us:,.0f} µs per event in all "
            f"({cpu['sessionizer_and_identity']:,} events per CPU second). Of that, faust's own per-record work (the floor row) is "
            f"{floor_us:,.1f} µs per event at {per_record} events per record: envelopes made it negligible. The sessionize step is "
            f"{step_us} µs. The remaining {max(0.0, worker_us - step_us - floor_us):,.0f} µs are the other agents (stamping re-keyed events, the "
            "identity sequencer and `person-of`, one faust record per mapping on the compacted `identities` topic) and handing every "
            "output, changelog record and envelope to aiokafka's producer. So 20,000 events/s on one core (50 µs per event in all) "
            f"needs {max(0.0, worker_us - 50):,.0f} µs less per event: the sessionize step's `assign` and record reading (about "
            "half of it: every event is decoded and re-encoded in Python, and a session's remembered message ids are scanned per "
            "event), the second pass of re-keyed events through `stamp_person`, and fewer changelog records per identity command. "
            f"On the wall clock the worker was busy {r['sessionizer_events_per_s'] / cpu['sessionizer']:.0%} of the time (the rest it "
            "waited on fetches and the broker), and on this shared machine the wall-clock figure is further divided by the share of "
            "a core the worker got.",
        ]
    elif not met and floor_ok:
        lines.append(
            f"Where the time goes, from the same run: faust's own per-record work (the floor row) allows {r['faust_floor_events_per_s']:,} events/s "
            f"at {per_record} events per record, the bare loop {r['bare_loop_events_per_s']:,}; the distance from the floor to the sessionizer "
            "is footfall's per-event work (the µs above, times the events) plus its sends and table writes."
        )
    return [*lines, ""]


def projector_section(r: dict) -> list[str]:
    f = r["freshness"]
    return [
        "## Projector (`make bench-projector`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC, embedded ClickHouse (chdb). {r['rows']:,} enriched events pre-produced; "
        "the baseline is a plain clickhouse-connect bulk insert of the same rows (10,000-row column-typed batches).",
        "",
        "| scenario | rows/s | ratio to the bulk insert |",
        "| --- | --- | --- |",
        f"| bulk insert (baseline) | {r['bulk_insert_rows_per_s']:,} | 1.00× |",
        *(
            [
                f"| floor: consume, decode with orjson, build the same rows, insert, commit (no schema check, no profiles) | "
                f"{r['floor_rows_per_s']:,} | {r['floor_ratio_to_bulk_insert']:.3f}× |"
            ]
            if "floor_rows_per_s" in r
            else []
        ),
        f"| projector (events, daily counts, persons) | {r['projector_rows_per_s']:,} | {r['projector_ratio_to_bulk_insert']:.3f}× |",
        "",
        f"Freshness, collector 200 → queryable in `events`, whole pipeline at {f['offered_events_per_s']} events/s offered "
        f"({f['queryable']:,} of {f['acknowledged']:,} acknowledged events found): "
        f"p50 {f['freshness_p50_s']} s, p95 {f['freshness_p95_s']} s, p99 {f['freshness_p99_s']} s (target p99 ≤ 2 s: {verdict(f['freshness_p99_s'] <= 2)}).",
        "Targets: 100,000 rows/s and 0.7× the bulk insert — "
        f"{verdict(r['projector_rows_per_s'] >= 100_000 and r['projector_ratio_to_bulk_insert'] >= 0.7)}.",
        *(
            [
                "The floor row is the least a projector that decodes each message in Python can do (the issue asks for column-typed",
                "inserts, so the decoding is in Python). It is already below the targets, so no projector of this design can meet them",
                "on this machine; the distance from the floor to the projector is the persons read-modify-write and the schema check.",
            ]
            if "floor_rows_per_s" in r and (r["floor_rows_per_s"] < 100_000 or r["floor_ratio_to_bulk_insert"] < 0.7)
            else []
        ),
        "",
    ]


STEP_HEADER = [
    "| offered events/s | acknowledged/s | queryable | freshness p50 | p95 | p99 | CPU % of a core: collector / processor / projector / kafka / load generator / whole machine while the load ran (of 200) | RSS MiB: collector / processor / projector / kafka |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def step_rows(steps: list[dict]) -> list[str]:
    rows = []
    names = ("collector", "processor", "projector", "kafka")
    for step in steps:
        usage = step["usage"]

        def seconds(v: float | None) -> str:
            return f"{v:.2f} s" if v is not None else "—"

        rows.append(
            f"| {step['offered_per_s']:,.0f} | {step['acknowledged_per_s']:,} | {step['queryable']:,}/{step['acknowledged']:,} | "
            f"{seconds(step['freshness_p50_s'])} | {seconds(step['freshness_p95_s'])} | {seconds(step['freshness_p99_s'])} | "
            f"{' / '.join(str(usage.get(n, {}).get('cpu_percent', '—')) for n in (*names, 'loadgen', 'machine'))} | "
            f"{' / '.join(str(usage.get(n, {}).get('rss_mib', '—')) for n in names)} |"
        )
    return rows


def system_section(r: dict) -> list[str]:
    sustained, scaling = r["sustained"], r["scaling"]
    lines = [
        "## Whole system (`make bench-system`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. The whole pipeline on this machine, broker included (1 collector worker, 1 processor,",
        f"1 projector on chdb), driven by `footfall loadgen` (seeded traffic, batches of {sustained.get('batch_size', 50)}) at stepped offered rates. Freshness is",
        "collector acknowledgement → the event is queryable in `events`, seen by polling the read API every 0.2 s.",
        "",
        *STEP_HEADER,
        *step_rows(sustained["steps"]),
    ]
    best = sustained["sustained_per_s"]
    lines += [
        "",
        f"Sustained with freshness p99 ≤ 2 s: **{best:,} events/s**" if best else "Sustained with freshness p99 ≤ 2 s: **no step met it**",
        f"(target ≥ 5,000 events/s: {verdict(bool(best) and best >= 5_000)}).",
        *(
            [
                f"Load average of the shared 2-core machine (1/5/15 min): {'/'.join(map(str, r['load_average']['before']))} before the run, "
                f"{'/'.join(map(str, r['load_average']['after']))} after."
            ]
            if "load_average" in r
            else []
        ),
        "",
        *single_event_steps(),
        "![freshness over time](bench/results/system-freshness.png)",
        "![throughput against offered rate](bench/results/system-throughput.png)",
        "",
        "### Scaling the processors (the bottleneck stage)",
        "",
        f"A backlog of {scaling['one_worker']['events']:,} raw events"
        + (f" in {scaling['one_worker']['records']:,} envelopes" if "records" in scaling["one_worker"] else "")
        + ", 4 partitions (more partitions than workers), drained by:",
        "",
        "| workers | events/s | gain | lost | extra copies | workers restarted after stopping themselves |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {run['workers']} | {run['events_per_s']:,} | {gain:.2f}× | {run['lost']} | {run['extra_copies']} | {run.get('restarts', 0)} |"
            for run, gain in ((scaling["one_worker"], 1.0), (scaling["two_workers"], scaling["gain"]))
        ],
        "",
        f"Target: 2 workers ≥ 1.6× one — {verdict(scaling['gain'] >= 1.6)}. Both workers share 2 cores with the broker and the load,",
        "so this machine cannot show the gain a second machine would.",
        "",
    ]
    rebalance = scaling["join_and_leave"]
    lines += [
        f"Rebalance: while 1 worker drained, a second joined at {rebalance['marks'].get('join', 0):.1f} s and the first left (SIGTERM) at "
        f"{rebalance['marks'].get('leave', 0):.1f} s. The group's committed progress stood still for at most "
        f"{rebalance.get('pause_on_join_s', 0)} s around the join and {rebalance.get('pause_on_leave_s', 0)} s around the leave. "
        f"Lost: {rebalance['lost']}; extra copies on `enriched`: {rebalance['extra_copies']} (collapsed by the events table's key)."
        + (
            f" Workers restarted by their supervisor after stopping themselves (exit 70, e.g. the continuity guard catching faust "
            f"skipping records after the rebalance): {rebalance['restarts']}."
            if "restarts" in rebalance
            else ""
        ),
        "",
        "![lag while a worker joins and leaves](bench/results/system-rebalance-lag.png)",
        "",
    ]
    return lines


def single_event_steps() -> list[str]:
    """The step table of the single-event run (`make bench-system BENCH_ARGS='--batch-size 0 --skip-scaling'`)."""
    single = load("system-single-events")
    if not single:
        return []
    best = single["sustained"]["sustained_per_s"]
    return [
        f"Single-event traffic (every call its own request; measured {single['measured_at'][:16]} UTC, same pipeline):",
        "",
        *STEP_HEADER,
        *step_rows(single["sustained"]["steps"]),
        "",
        f"Sustained with freshness p99 ≤ 2 s: **{best:,} events/s**." if best else "Sustained with freshness p99 ≤ 2 s: no step met it.",
        "",
    ]


def console_section(r: dict) -> list[str]:
    pages = r["pages"]
    met = sum(1 for row in pages.values() if row["met"])
    requests = next(iter(pages.values()))["requests"]
    return [
        "## Console pages (`make bench-console`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC over {r['persons']:,} persons and {r['events']:,} events (embedded ClickHouse, generated",
        f"in place in {sum(r['setup_seconds'].values()):.0f} s). One request at a time, signed in, {requests} per page after",
        f"a warm-up (p99 is {_rank_from_top(requests, 0.99)}). The baseline is the management API call each page is built on, timed in the same run: the ratio is",
        f"what rendering the page adds. Target: every page under {r['target_p99_ms']:.0f} ms p99 ({met} of {len(pages)} met).",
        *load_lines(r),
        *(
            [f"**Stopped early: {len(pages)} of {r.get('pages_planned', '?')} pages measured.** {r.get('note', '')}"]
            if not r.get("complete", True)
            else []
        ),
        "",
        "| page | p50 | p99 | API call p99 (baseline) | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {name} (`{row['page']}`) | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | {row['api_p99_ms']:.1f} ms (`{row['api']}`) | "
            f"{row['p99_ratio_to_api']:.2f}× | {verdict(row['met'])} |"
            for name, row in pages.items()
        ],
        "",
        *(
            [
                f"The segment builder's live count (`{preview['api']}`, the call the builder page makes to preview a condition; "
                f"plan equals team and status active): p50 {preview['p50_ms']:.1f} ms, p99 {preview['p99_ms']:.1f} ms "
                f"({verdict(preview['p99_ms'] < r['target_p99_ms'])} against the same target).",
                "",
            ]
            if (preview := r.get("segment_preview"))
            else []
        ),
    ]


def imports_section(r: dict) -> list[str]:
    rps = r["median_rows_per_s"]
    return [
        "## CSV import (`make bench-imports`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. A {r['rows']:,}-row file ({r['file_bytes'] / 1e6:.1f} MB, {r['broken_rows']:,} rows broken on purpose), "
        f"median of {r['rounds']} interleaved rounds. The baseline is `csv.reader` over the same file in the same run.",
        "",
        "| scenario | rows/s | ratio to a plain csv read |",
        "| --- | --- | --- |",
        f"| plain `csv` read (baseline) | {rps['csv-read']:,.0f} | 1.00× |",
        f"| import: checked, looked up, each good row's commands acknowledged by Kafka | {rps['import']:,.0f} | {r['import_ratio_to_csv_read']:.3f}× |",
        f"| re-import of the same file (every row already applied: nothing sent) | {rps['re-import']:,.0f} | {r['reimport_ratio_to_csv_read']:.3f}× |",
        "",
        *(
            [
                f"CPU of the whole process (every thread, chdb's and the Kafka client's included) per row: import {cpu['import']:,.0f} µs, "
                f"re-import {cpu['re-import']:,.0f} µs (medians; unlike the wall clock, not divided by the share of a core a busy machine leaves).",
                "",
            ]
            if (cpu := r.get("median_cpu_us_per_row"))
            else []
        ),
        f"Peak memory growth of the process over all rounds: {r['peak_rss_growth_mib']:.0f} MiB (rows are streamed; "
        + (
            f"at most two chunks of {r['chunk_rows']:,} rows are held at a time)."
            if "chunk_rows" in r
            else "a chunk of 2,000 rows is held at a time)."
        ),
        "",
    ]


def configs_section(r: dict) -> list[str]:
    e, rps = r["evaluation"], r["median_requests_per_s"]
    return [
        "## Dynamic configs (`make bench-configs`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. Evaluation in memory, per request: the worker's state lookup (distinct id →",
        f"person → properties) and {e['configs_per_request']} configs of mixed shapes (rollouts, splits, nested AND/OR conditions, 100",
        f"overrides each), {e['requests']:,} requests with distinct ids: **p50 {e['p50_us']:,.0f} µs, p99 {e['p99_us']:,.0f} µs** "
        f"(max {e['max_us']:,.0f} µs; {e['per_config_p50_us']:.1f} µs per config at the median).",
        "",
        f"HTTP, one uvicorn worker pinned to a core, {r['setup']['load_generator']}, median of {r['setup']['rounds']} interleaved rounds:",
        "",
        "| scenario | requests/s | ratio to /v1/track |",
        "| --- | ---: | ---: |",
        f"| POST /v1/track (baseline, one analytics.js event, 200 after Kafka's ack) | {rps['track']:,.0f} | 1.00 |",
        f"| POST /v1/configs, devices already exposed within the window (evaluation + answer) | {rps['configs-repeat']:,.0f} | {r['configs_repeat_ratio_to_track']:.2f} |",
        f"| POST /v1/configs, new devices (+ {e['configs_per_request']} `$config_served` exposures written, 200 after Kafka's ack) | {rps['configs-new']:,.0f} | {r['configs_new_ratio_to_track']:.2f} |",
        "",
        f"Non-2xx answers: {r['non_2xx_answers']}. A request serves every config; ask for fewer with `keys` to pay for fewer.",
        *(
            [
                "A p99 more than ten times the p50 is the machine's other load preempting a single-threaded loop (the run shared",
                "its cores); the p50 and the ratios to /v1/track, measured in the same rounds, are the figures to compare.",
            ]
            if e["p99_us"] > 10 * e["p50_us"]
            else []
        ),
        "",
    ]


def api_section(r: dict) -> list[str]:
    w, rd = r["writes"], r["readable"]
    lines = [
        "## Management API (`make bench-api`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC, one process (the API on uvicorn, the projector and the load share it: Python's",
        f"GIL is part of the figure), embedded ClickHouse, {r['concurrency']} connections.",
        "",
        "| what | figure | floor (same run) | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| POST /api/v1/users: validate, 409 lookups, two commands acknowledged | {w['per_s']:,.0f} writes/s, p99 {w['p99_ms']:,.0f} ms "
        f"| the two records straight through the CommandBus: {w['floor']['per_s']:,.0f}/s, p99 {w['floor']['p99_ms']:,.0f} ms | {w['ratio_to_floor']:.2f} |",
        f"| PATCH ?wait=true: write to readable | p50 {rd['p50_ms']:,.0f} ms, p99 {rd['p99_ms']:,.0f} ms "
        f"| the PATCH answered at Kafka's ack: p50 {rd['floor']['p50_ms']:,.0f} ms, p99 {rd['floor']['p99_ms']:,.0f} ms | |",
    ]
    for kind, s in r["search"].items():
        lines.append(
            f"| GET /api/v1/users over {r['persons']:,} persons: {kind.replace('_', ' ')} | p50 {s['p50_ms']:,.0f} ms, p99 {s['p99_ms']:,.0f} ms "
            f"| the same SQL on the client: p99 {s['floor']['p99_ms']:,.0f} ms | {s['p99_ratio_to_floor']:.2f} |"
        )
    return lines + ["", r.get("note", ""), ""]


def segments_section(r: dict) -> list[str]:
    setup, base = r["setup"], r["baseline"]
    lines = [
        "## Segment evaluation (`make bench-segments`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC on {setup['engine']}: {setup['persons']:,} persons, {setup['events']:,} events over 90 days "
        f"(bench.console's data), median of {setup['rounds']} runs. Baseline in the same run: `{base['what']}` = {base['ms']:,.0f} ms.",
        *load_lines(r),
        "",
        "| segment shape | members | query ms | ratio to baseline | first-run transitions ms (everyone enters) | at 1,000,000 persons (linear) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, shape in r["shapes"].items():
        lines.append(
            f"| {name} | {shape['members']:,} | {shape['query_ms']:,.0f} | {shape['ratio_to_baseline']:.2f}× | "
            f"{shape['transitions_ms']:,.0f} | ~{shape['at_1m_persons_ms'] / 1000:,.1f} s |"
        )
    return lines + [
        "",
        "A property-only segment costs less than reading every person's id; a behaviour segment scans the window's events "
        "(several times the baseline). The first run of a segment publishes one change per member (about 50-80 µs each to build, "
        "before Kafka's send), so at 1,000,000 persons a new large segment takes tens of seconds once; later runs publish only the "
        "transitions and cost about the query alone. Over the read API (embedded engine) the members' ids also cross HTTP "
        "as JSON. With the default 60 s schedule, at 1,000,000 persons about eight behaviour segments of this shape fit in one interval "
        "on this 2-core machine; a ClickHouse server with more cores scales the query part.",
        "",
    ]


def webhooks_section(r: dict) -> list[str]:
    d, w = r["decide"], r["deliver"]
    return [
        "## Outbound stream and webhooks (`make bench-webhooks`)",
        "",
        f"Measured {r['measured_at'][:16]} UTC. Load average (1, 5, 15 min) before the run "
        f"{', '.join(f'{v:.1f}' for v in r['load_average']['before'])}, after {', '.join(f'{v:.1f}' for v in r['load_average']['after'])}.",
        "",
        "| what | figure | baseline (same run) | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| deciding a batch's profile changes, {d['persons']:,} persons with 5 changes each ({d['changes']:,} changes) "
        f"| fold + decide {d['fold_and_decide_ms']:,.0f} ms ({d['decide_us_per_person']:,.0f} µs per person) "
        f"| the fold alone: {d['fold_ms']:,.0f} ms | {d['ratio_to_fold']:.2f} |",
        f"| deciding for a batch that changes no property (page views) | {d['unchanged_us_per_person']:,.2f} µs per person | | |",
        f"| one webhook, {w['changes']:,} changes from profile-changes to a local receiver (signed, attempts recorded, "
        f"{w['concurrency']} persons at once) | {w['dispatcher_per_s']:,} deliveries/s | the same bodies POSTed with httpx: "
        f"{w['plain_httpx_per_s']:,}/s | {w['ratio_to_plain_httpx']:.2f} |",
        "",
        "The decision runs in the projector before each batch's persons rows; next to the batch's ClickHouse round trips",
        "(the persons read-modify-write) it is small except in batches where every person changes several things.",
        "The receiver shares the benchmark's process (and GIL) with the dispatcher and the httpx baseline alike.",
        "",
    ]


def render() -> str:
    sections = {
        "collector": collector_section,
        "processors": processors_section,
        "projector": projector_section,
        "system": system_section,
        "imports": imports_section,
        "configs": configs_section,
        "console": console_section,
        "api": api_section,
        "segments": segments_section,
        "webhooks": webhooks_section,
    }
    results = {name: load(name) for name in sections}
    machine = next((r["machine"] for r in results.values() if r), {})
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (or `.venv/bin/python -m bench.report` after any single `make bench-*`) from",
        "`bench/results/*.json`. These machines are shared and noisy, so every figure comes with a baseline measured",
        "in the same run on the same machine; the ratios are what to compare across runs.",
        "",
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu')}), {machine.get('memory_gib')} GiB; Python {machine.get('python')}; "
        f"Kafka {machine.get('kafka')} (single node, KRaft); faust-streaming {machine.get('faust-streaming')}, aiokafka {machine.get('aiokafka')}, "
        f"confluent-kafka {machine.get('confluent-kafka')}, clickhouse-connect {machine.get('clickhouse-connect')}, chdb {machine.get('chdb')}.",
        "",
    ]
    notes = RESULTS_DIR / "notes.md"  # dated remarks on runs that the JSON cannot carry (a run cut short, a busy machine)
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    for name, section in sections.items():
        lines += section(results[name]) if results[name] else [f"## {name}", "", f"Not measured yet: run `make bench-{name}`.", ""]
    lines += [
        "## Reading these numbers",
        "",
        "- Every stage is Python; the per-event CPU cost (JSON, validation, Kafka client) dominates. The collector and the",
        "  projector scale by processes (`--workers`, more projectors against a ClickHouse server); the processors by workers",
        "  in the consumer group, up to the partition count.",
        "- The processors are the end-to-end bottleneck. Under backlog a worker is CPU-bound, and its time is spread thin",
        "  (py-spy, 2026-11-24): about 45 % in the sessionizer agent (the pure sessionizer about 12 %, building and handing",
        "  over outputs about 15 %), and the rest in faust's fetcher and stream machinery and aiokafka's producer. The floor",
        "  row is what footfall's own code cannot remove: an agent that does nothing already pays faust's per-message",
        "  work (two asyncio tasks per message in its fetcher, a queue hop per stream).",
        "- The projector under backlog (py-spy, 2026-11-24): about a quarter of its time in ClickHouse queries of the persons",
        "  read-modify-write (live mappings, stored states, exact event and session counts), a fifth decoding and checking",
        "  messages, a fifth inserting. Folding a person's batch in one pass (`fold_all`) and writing DateTime64 columns as",
        "  epoch milliseconds gained about 10 %: in alternating runs under the same conditions, 21.2k and 21.8k rows/s before,",
        "  23.7k and 23.9k after. The bulk-insert baseline builds the same rows and gained 15 % from the milliseconds, so",
        "  the ratio barely moved (0.135× to 0.131×). Earlier figures near 14.6k rows/s were timed with the consumer-group",
        "  join and without the GC tuning that `footfall projector` applies; the bench now does both as production does.",
        "- The floor rows are baselines in the same sense as the bare loop and the null app: measured in the same run, on",
        "  the same machine, so the ratios compare like with like.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    TARGET.write_text(render())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
