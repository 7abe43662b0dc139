"""`footfall`: run each stage, the whole pipeline, migrations and queries. The only place stages are wired."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from footfall.supervisor import Child, RestartPolicy, Supervisor, footfall_command
from schemas.config import FootfallSettings, tune_garbage_collector

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka.sh"

cli = typer.Typer(help="footfall: tracking beacons → Kafka → sessions & identities → ClickHouse profiles.", no_args_is_help=True)
console = Console(stderr=True)


def _settings(**overrides: Any) -> FootfallSettings:
    """Settings from the environment; command-line overrides are exported so child processes agree."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"FOOTFALL_{name.upper()}"] = str(value)
    return FootfallSettings()


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
def topics() -> None:
    """Create the Kafka topics (missing ones only)."""
    from footfall.topics import ensure_topics

    settings = _settings()
    created = ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")


@cli.command()
def collector(
    port: Annotated[int | None, typer.Option(help="HTTP port [FOOTFALL_COLLECTOR_PORT]")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes [FOOTFALL_COLLECTOR_WORKERS]")] = None,
) -> None:
    """Run the HTTP collector (Segment-compatible tracking API)."""
    import tempfile

    import uvicorn

    from footfall.topics import ensure_topics

    settings = _settings(collector_port=port, collector_workers=workers)
    _logging()
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    if settings.collector_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="footfall-metrics-")
    uvicorn.run(
        "ingest.app:create_app",
        factory=True,
        host=settings.collector_host,
        port=settings.collector_port,
        workers=settings.collector_workers,
        log_level="warning",
        access_log=False,
        # The app believes X-Forwarded-For only from FOOTFALL_TRUSTED_PROXIES; uvicorn's own default trusts 127.0.0.1.
        proxy_headers=False,
        # uvicorn's protocol with a deadline on request headers (slowloris); see ingest/server.py.
        http="ingest.server:HeaderDeadlineProtocol",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


@cli.command()
def processor() -> None:
    """Run the stream processors (a faust worker)."""
    import faust

    from footfall.probes import serve_probes
    from footfall.topics import ensure_topics
    from processors import metrics
    from processors.app import create_app
    from processors.readiness import ProcessorReadiness
    from processors.runtime import use_uvloop

    settings = _settings()
    state_dir = settings.data_dir / "processor"
    state_dir.mkdir(parents=True, exist_ok=True)
    metrics.record_start(state_dir)
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    use_uvloop()
    app = create_app(settings)
    if settings.processor_metrics_port:  # /metrics, and /readyz once the worker joined its group and recovered its tables
        serve_probes(settings.processor_metrics_port, ProcessorReadiness(app), host=settings.processor_metrics_host)
    tune_garbage_collector(settings)
    try:
        faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
    finally:  # a clean stop (SIGTERM, Ctrl-C); stop_worker's exit skips this and leaves its own cause
        metrics.record_exit("stopped")


@cli.command()
def migrate() -> None:
    """Apply the ClickHouse migrations (also done by the projector at start)."""
    from clickhouse_connect.driver.exceptions import ProgrammingError

    from projections.clickhouse import connect
    from projections.clickhouse import migrate as apply

    settings = _settings()
    try:
        client = connect(settings.clickhouse_dsn, cluster=settings.clickhouse_cluster)
    except ProgrammingError as exc:  # the embedded engine's directory is owned by a running projector
        console.print(f"[red]cannot open {settings.clickhouse_dsn}: {exc}[/red]\nA running projector applies migrations at start.")
        raise typer.Exit(1) from exc
    applied = apply(client, settings.database, settings.clickhouse_cluster)
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


def _with_domain_sources(settings: FootfallSettings) -> FootfallSettings:
    """The sources whose users are linked to companies by email domain (their `company_domain_membership`)."""
    from ingest.config import CollectorConfig

    ids = [s.id for s in CollectorConfig().sources().all() if s.company_domain_membership]
    return settings.model_copy(update={"company_domain_sources": sorted({*settings.company_domain_sources, *ids})})


@cli.command()
def projector() -> None:
    """Run the projector (Kafka → ClickHouse) and the read API it serves."""
    import uvicorn

    from footfall.secrets import admin_key
    from projections.clickhouse import connect
    from projections.clickhouse import migrate as apply
    from projections.projector import Projector
    from projections.read_api import create_read_app

    settings = _with_domain_sources(_settings())
    _logging()
    apply(connect(settings.clickhouse_dsn), settings.database, settings.clickhouse_cluster)
    worker = Projector(settings, connect(settings.clickhouse_dsn, cluster=settings.clickhouse_cluster))
    tune_garbage_collector(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_read_app(connect(settings.clickhouse_dsn), admin_key(settings), worker.readiness),
            host=settings.read_api_host,
            port=settings.read_api_port,
            log_level="warning",
        )
    )
    failure: list[BaseException] = []

    def project() -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported below, and the process exits non-zero
            failure.append(exc)
            logging.getLogger("footfall.projector").exception("projector stopped")
        finally:
            server.should_exit = True

    thread = threading.Thread(target=project, name="projector")
    thread.start()
    server.run()
    worker.stop()
    thread.join()
    if failure:
        raise typer.Exit(1)


@cli.command()
def segments() -> None:
    """Run the segment evaluator (one per deployment): segment enters and exits onto profile-changes."""
    from footfall.probes import serve_probes
    from footfall.secrets import admin_key
    from footfall.topics import ensure_topics
    from projections.segment_evaluator import SegmentEvaluator

    settings = _settings()
    _logging()
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    evaluator = SegmentEvaluator(settings, _sql_runner(settings, admin_key(settings)))
    if settings.segments_metrics_port:  # /metrics, and /readyz once its state is loaded and ClickHouse answers
        serve_probes(settings.segments_metrics_port, evaluator.readiness, host=settings.processor_metrics_host)
    signal.signal(signal.SIGTERM, lambda *_: evaluator.stop())
    try:
        evaluator.run()
    except KeyboardInterrupt:
        evaluator.stop()


def _sql_runner(settings: FootfallSettings, key: str):
    """A blocking `(sql, parameters) -> rows` over ClickHouse: the projector's read API when it owns the embedded
    engine, else the server itself. `{db}` is the configured database."""
    if settings.embedded_clickhouse:
        client = httpx.Client(timeout=300, headers={"Authorization": f"Bearer {key}"})
        url = f"http://{settings.read_api_host}:{settings.read_api_port}/sql"

        def via_read_api(sql: str, parameters: dict[str, Any]) -> list[list[Any]]:
            response = client.post(url, content=orjson.dumps({"query": sql.replace("{db}", settings.database), "parameters": parameters}))
            response.raise_for_status()
            return response.json()["rows"]

        return via_read_api
    from projections.clickhouse import connect

    server = connect(settings.clickhouse_dsn)

    def directly(sql: str, parameters: dict[str, Any]) -> list[list[Any]]:
        return [
            list(row)
            for row in server.query(sql.replace("{db}", settings.database), parameters=parameters, settings={"readonly": 2}).result_rows
        ]

    return directly


@cli.command()
def webhooks() -> None:
    """Run the webhook dispatcher: each change on profile-changes POSTed, signed, to every webhook that wants it."""
    import asyncio

    from footfall.probes import serve_probes
    from footfall.topics import ensure_topics
    from outbound.webhooks import Dispatcher

    settings = _settings()
    _logging()
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    dispatcher = Dispatcher(settings)
    if settings.webhooks_metrics_port:  # /metrics, and /readyz once the definitions are loaded
        serve_probes(settings.webhooks_metrics_port, dispatcher.readiness, host=settings.processor_metrics_host)

    async def dispatch() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stop)
        await dispatcher.run()

    asyncio.run(dispatch())


def _api_reader(settings: FootfallSettings, key: str):
    """How the API side reads ClickHouse: through the projector's read API when it owns the embedded engine."""
    from api.reads import ClickHouseReader, ReadApiReader

    if settings.embedded_clickhouse:
        return ReadApiReader(f"http://{settings.read_api_host}:{settings.read_api_port}", key, settings.database)
    from projections.clickhouse import connect

    return ClickHouseReader(connect(settings.clickhouse_dsn), settings.database)


@cli.command("import")
def import_users(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the CSV file; its first line names the columns")],
    mapping: Annotated[list[str] | None, typer.Option("--mapping", help="<column>=<property>, repeatable")] = None,
    dedupe: Annotated[str, typer.Option(help="the column that says who a row is: user_id, email or customer_id")] = "user_id",
    include_unknown: Annotated[bool, typer.Option(help="columns that name no defined property become custom properties")] = False,
    dry_run: Annotated[bool, typer.Option(help="check every row and report; send nothing")] = False,
    errors: Annotated[Path | None, typer.Option(help="where refused rows go [<file>.errors.csv]")] = None,
) -> None:
    """Import users from a CSV file: each row becomes the create or update command the API sends.

    Re-running a file changes nothing; a changed row updates its user. Needs the projector running (it
    reads which users exist) and Kafka."""
    import asyncio
    import uuid as uuid_

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from api.commands import CommandBus
    from api.import_rows import DEDUPE_KEYS, ImportOptions, ImportRefused
    from api.imports import CsvImport, ImportReport
    from api.routers.imports import parse_mapping
    from footfall.secrets import admin_key
    from footfall.topics import ensure_topics
    from schemas.compacted import CompactedFollower
    from schemas.properties import PropertyDefinition, effective
    from schemas.stages import StageDefinition, effective_stages

    settings = _settings()
    _logging("WARNING")
    if dedupe not in DEDUPE_KEYS:
        console.print(f"[red]--dedupe must be one of {', '.join(DEDUPE_KEYS)}[/red]")
        raise typer.Exit(2)
    try:
        options = ImportOptions(dedupe=dedupe, mapping=parse_mapping(mapping or []), include_unknown=include_unknown, dry_run=dry_run)
    except ImportRefused as refused:
        console.print(f"[red]{refused.field}: {refused.message}[/red]")
        raise typer.Exit(2) from None
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    follower = CompactedFollower(
        settings.kafka_bootstrap_servers, settings.topics.property_definitions.name, PropertyDefinition.model_validate_json
    )
    follower.catch_up()
    definitions = effective(follower.values.values())
    follower.close()
    stages = CompactedFollower(settings.kafka_bootstrap_servers, settings.topics.lifecycle_stages.name, StageDefinition.model_validate_json)
    stages.catch_up()
    options = dataclasses.replace(options, stages=frozenset(s.id for s in effective_stages(stages.values.values())))
    stages.close()
    errors_path = errors or path.with_name(path.name + ".errors.csv")
    report = ImportReport(str(uuid_.uuid4()), dry_run=dry_run)
    size = path.stat().st_size

    async def run(progress: Progress, task) -> None:
        reader = _api_reader(settings, admin_key(settings))
        bus = None if dry_run else CommandBus(settings.kafka_bootstrap_servers)
        job = CsvImport(
            report,
            options,
            definitions,
            reader.rows,
            bus.send if bus else None,
            settings.topics,
            errors_path,
            on_progress=lambda r: progress.update(task, completed=r.bytes_read, rows=r.rows_read, rejected=r.rejected),
        )
        try:
            with open(path, "rb") as binary:
                await job.run(binary)
        finally:
            if bus is not None:
                bus.close()
            if hasattr(reader, "close"):
                await reader.close()

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows, {task.fields[rejected]:,} refused"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("checking" if dry_run else "importing", total=size, rows=0, rejected=0)
            asyncio.run(run(progress, task))
    except ImportRefused as refused:
        console.print(f"[red]{refused.field}: {refused.message}[/red]")
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the report says what happened; the exit code says it failed
        console.print(f"[red]import failed: {exc}[/red]")
        raise typer.Exit(1) from None
    summary = Table(title="dry run: nothing sent" if dry_run else "import done")
    for name in ("rows_read", "accepted", "rejected", "created", "updated", "unchanged"):
        summary.add_column(name.replace("_", " "), justify="right")
    summary.add_row(*(f"{getattr(report, name):,}" for name in ("rows_read", "accepted", "rejected", "created", "updated", "unchanged")))
    console.print(summary)
    if report.ignored_columns:
        console.print(f"ignored columns (no such property; --include-unknown takes them): {', '.join(report.ignored_columns)}")
    if report.rejected:
        console.print(f"refused rows: {errors_path}")


@cli.command()
def api(port: Annotated[int | None, typer.Option(help="HTTP port [FOOTFALL_API_PORT]")] = None) -> None:
    """Run the management API (/api/v1/: users, commands on Kafka; docs at /api/v1/docs)."""
    import uvicorn

    from api.app import ApiConfig, create_app
    from api.console import mount_console
    from footfall.secrets import admin_key
    from footfall.topics import ensure_topics
    from ingest.config import CollectorConfig

    settings = _settings(api_port=port)
    _logging()
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    key = admin_key(settings)
    write_keys = {entry.partition("=")[0].strip() for entry in CollectorConfig().write_keys.split(",")}
    if key in write_keys:
        console.print("[red]the admin key is also a write key; give FOOTFALL_ADMIN_KEY a secret of its own[/red]")
        raise typer.Exit(1)
    reader = _api_reader(settings, key)
    app = create_app(settings, key, reader, config=ApiConfig(wait_timeout_s=settings.api_wait_timeout_seconds))
    sources = [(source.id, source.write_key) for source in CollectorConfig().sources().all()]
    mount_console(app, key, settings, sources=sources)
    # No access log: paths carry user refs (emails), which are personal data.
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning", access_log=False)


@cli.command()
def replay(
    switch: Annotated[bool, typer.Option(help="rename the rebuilt database into place when done")] = True,
) -> None:
    """Rebuild every projection from Kafka into a fresh database, then switch reads to it.

    Stop the projector first (with the embedded engine it owns the data directory)."""
    from projections.clickhouse import connect
    from projections.replay import replay as rebuild

    settings = _with_domain_sources(_settings())
    _logging()
    report = rebuild(settings, connect(settings.clickhouse_dsn, cluster=settings.clickhouse_cluster), switch=switch)
    console.print(
        f"replayed {report.messages} messages in {report.seconds:.1f}s into {report.database}"
        + (f"; the previous tables are kept in {report.previous}" if report.previous else "")
    )


@cli.command()
def recover(
    kind: Annotated[list[str], typer.Option("--kind", help="bad-row kind(s) to recover, e.g. schema_violation")],
    fix: Annotated[Path, typer.Option("--fix", exists=True, dir_okay=False, help="a Python file defining fix(payload, row)")],
    since: Annotated[datetime | None, typer.Option(help="only rows received since then (UTC unless it says otherwise)")] = None,
    source: Annotated[str | None, typer.Option(help="only rows of this source id")] = None,
    dry_run: Annotated[bool, typer.Option(help="fix and validate, but write nothing")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Fix refused calls from the dead-letter topic and send them again through the collector's validation.

    Reports fixed (written to the raw topic), still bad (refused again; written nowhere) and skipped. Safe to
    run twice: a recovered event keeps its messageId and its time, so it is counted once (ingest/recovery.py)."""
    from ingest.config import CollectorConfig
    from ingest.recovery import load_fix
    from ingest.recovery import recover as recover_rows
    from schemas.bad_rows import BAD_ROW_KINDS

    unknown = set(kind) - set(BAD_ROW_KINDS)
    if unknown:
        raise typer.BadParameter(f"unknown kind(s) {', '.join(sorted(unknown))}; one of {', '.join(BAD_ROW_KINDS)}", param_hint="--kind")
    settings = _settings()
    when = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    report = recover_rows(
        settings, CollectorConfig().sources(), load_fix(fix), kinds=set(kind), since=when, source_id=source, dry_run=dry_run
    )
    summary = report.as_json()
    if json_lines:
        print(orjson.dumps(summary).decode())
        return
    verb = "would be re-sent" if dry_run else "re-sent"
    console.print(f"fixed: {summary['fixed']} ({verb}), still bad: {summary['still_bad']}, skipped: {summary['skipped']}")
    for reason, count in report.skipped.items():
        console.print(f"  skipped {count}: {reason}")
    for still in report.still_bad[:20]:
        console.print(
            f"  still bad at {still.position}[{still.index}]: " + "; ".join(f"{p.field}: {p.reason} ({p.rule})" for p in still.problems)
        )


@cli.command()
def lag(json_lines: Annotated[bool, typer.Option("--json", help="print JSON lines instead of a table")] = False) -> None:
    """How far each consumer group is behind, per topic partition (committed offset vs end)."""
    from footfall.lag import consumer_lag

    settings = _settings()
    topics = settings.topics
    groups = {
        f"{settings.topic_prefix}-processor": [
            topics.raw.name,
            topics.sessioned.name,
            topics.identity_commands.name,
            topics.identities.name,
        ],
        f"{settings.topic_prefix}-projector": [topics.enriched.name, topics.sessions.name, topics.identities.name, topics.persons.name],
    }
    rows = [row for group, names in groups.items() for row in consumer_lag(settings.kafka_bootstrap_servers, group, names)]
    if json_lines:
        for row in rows:
            print(orjson.dumps({**row.__dict__, "lag": row.lag}).decode())
        return
    table = Table("group", "topic", "partition", "committed", "end", "lag")
    for row in rows:
        table.add_row(row.group, row.topic, str(row.partition), str(row.committed), str(row.end), str(row.lag))
    Console().print(table)


def _query_via_read_api(settings: FootfallSettings, query: str) -> dict | None:
    """Ask the running projector (it owns the embedded engine); None when it is not running."""
    from footfall.secrets import admin_key

    key = admin_key(settings, create=False)
    url = f"http://{settings.read_api_host}:{settings.read_api_port}/sql"
    try:
        response = httpx.post(url, content=orjson.dumps({"query": query}), headers={"Authorization": f"Bearer {key or ''}"}, timeout=60)
    except httpx.ConnectError:
        return None
    body = response.json()
    if response.status_code != 200:
        console.print(f"[red]{body.get('error')}[/red]")
        raise typer.Exit(1)
    return body


def _query_directly(settings: FootfallSettings, query: str) -> dict:
    from clickhouse_connect.driver.exceptions import ClickHouseError, ProgrammingError

    from projections.clickhouse import connect
    from projections.read_api import run_query

    try:
        return run_query(connect(settings.clickhouse_dsn, settings.database), query)
    except ProgrammingError as exc:
        console.print(f"[red]cannot open {settings.clickhouse_dsn}: {exc}[/red]")
    except ClickHouseError as exc:
        console.print(f"[red]{exc}[/red]")
    raise typer.Exit(1)


@cli.command()
def sql(
    query: Annotated[str, typer.Argument(help='a read-only query, e.g. "SELECT count() FROM events"')],
    json_lines: Annotated[bool, typer.Option("--json", help="print JSON lines instead of a table")] = False,
) -> None:
    """Query the configured ClickHouse (the running pipeline's, or the embedded data directory)."""
    from projections.read_api import dumps

    settings = _settings()
    result = None
    if settings.embedded_clickhouse:
        result = _query_via_read_api(settings, query)
    if result is None:
        result = _query_directly(settings, query)
    if json_lines:
        for row in result["rows"]:
            sys.stdout.buffer.write(dumps(dict(zip(result["columns"], row, strict=True))) + b"\n")
        return
    table = Table(*result["columns"])
    for row in result["rows"]:
        table.add_row(*(v if isinstance(v, str) else dumps(v).decode() for v in row))
    Console().print(table)


def _default_write_key() -> str:
    """FOOTFALL_WRITE_KEY, else the first key of FOOTFALL_WRITE_KEYS (the development key by default)."""
    from ingest.config import CollectorConfig

    if key := os.environ.get("FOOTFALL_WRITE_KEY"):
        return key
    first = CollectorConfig().write_keys.split(",")[0]
    return first.partition("=")[0].strip()


@cli.command()
def loadgen(
    url: Annotated[
        str | None,
        typer.Option(help="collector base URL (default: http://$FOOTFALL_COLLECTOR_HOST:$FOOTFALL_COLLECTOR_PORT)", show_default=False),
    ] = None,
    write_key: Annotated[
        str | None,
        typer.Option(
            help="write key, sent as the Basic auth user (default: $FOOTFALL_WRITE_KEY, else the first key of $FOOTFALL_WRITE_KEYS)",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="traffic model seed: the same seed sends the same calls")] = 1,
    events: Annotated[
        int | None, typer.Option(help="calls to send (or write); 10000 when neither this nor --duration is given", show_default=False)
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="send for this long, e.g. 30s, 2m, 1h (ends at --events if that comes first)", show_default=False)
    ] = None,
    rate: Annotated[float, typer.Option(help="target calls per second (token bucket); 0 = as fast as possible")] = 1000,
    batch_size: Annotated[int, typer.Option(help="0 = each call to /v1/<type>; N = /v1/batch requests of up to N calls")] = 0,
    concurrency: Annotated[int, typer.Option(help="concurrent requests (HTTP connections)")] = 16,
    visitors: Annotated[int, typer.Option(help="simulated visitors (fewer: more returns and sessions per visitor)")] = 10_000,
    skew: Annotated[float, typer.Option(help="Zipf exponent of visitor activity (0 = all alike; 1 = a few very hot visitors)")] = 1.0,
    start: Annotated[str, typer.Option(help="simulated time of the first visits (ISO 8601 with zone)")] = "2025-01-01T00:00:00Z",
    write: Annotated[
        Path | None, typer.Option(help="write the generated calls to this JSONL file instead of sending them", show_default=False)
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="send the calls of this JSONL file (from --write) instead of generating them", show_default=False),
    ] = None,
    acks: Annotated[
        Path | None,
        typer.Option(
            help="write each acknowledged messageId and its ack time (unix seconds) here: .csv, else JSON lines", show_default=False
        ),
    ] = None,
    model_sent_at: Annotated[
        bool, typer.Option(help="send the model's sentAt instead of the wall clock at send (events then land at arrival time)")
    ] = False,
    max_retries: Annotated[int, typer.Option(help="retries of a request answered 429/5xx or failed in transport")] = 10,
    timeout: Annotated[float, typer.Option(help="seconds a request may take")] = 30.0,
    progress: Annotated[bool, typer.Option(help="show a live progress bar")] = True,
    json_report: Annotated[bool, typer.Option("--json", help="print the final report as JSON on stdout instead of a table")] = False,
) -> None:
    """Send realistic, seeded Segment traffic to a collector (or record it to a file), and report what was acknowledged.

    Exits 1 when any call was not acknowledged."""
    import asyncio
    from datetime import datetime

    from footfall import loadgen as lg
    from footfall.traffic import calls as generate

    if write and from_file:
        raise typer.BadParameter("--write records generated traffic; --from replays a file: give one of them")
    if write and duration:
        raise typer.BadParameter("--write generates a number of calls without sending: give --events, not --duration")
    try:
        seconds = lg.parse_duration(duration) if duration else None
        first_visits = datetime.fromisoformat(start)
        if first_visits.tzinfo is None:
            raise ValueError("--start needs a time zone, e.g. 2025-01-01T00:00:00Z")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if events is None and seconds is None and from_file is None:
        events = 10_000

    if write:
        traffic = generate(seed, events=events, visitors=visitors, skew=skew, start=first_visits)
        summary = lg.write_calls(write, traffic)
        if json_report:
            print(orjson.dumps(summary.as_dict()).decode())
        else:
            Console().print(lg.summary_table(summary, f"wrote {write}"))
        return

    settings = _settings()
    calls = lg.read_calls(from_file) if from_file else generate(seed, visitors=visitors, skew=skew, start=first_visits)

    async def send() -> lg.LoadReport:
        import signal as signals

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # The first Ctrl-C stops sending and waits for the answers to what was sent; a second one aborts.
        loop.add_signal_handler(signals.SIGINT, lambda: (stop.set(), loop.remove_signal_handler(signals.SIGINT)))
        return await lg.run_load(
            url or f"http://{settings.collector_host}:{settings.collector_port}",
            write_key or _default_write_key(),
            calls,
            rate=rate,
            batch_size=batch_size,
            concurrency=concurrency,
            events=events,
            duration=seconds,
            acks_path=acks,
            keep_acks=False,
            model_sent_at=model_sent_at,
            max_retries=max_retries,
            timeout=timeout,
            console=console if progress else None,
            stop=stop,
        )

    try:
        report = asyncio.run(send())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if json_report:
        print(orjson.dumps(report.as_dict()).decode())
    else:
        Console().print(lg.report_table(report))
    if report.acknowledged < report.sent:
        raise typer.Exit(1)


# -- footfall run ----------------------------------------------------------------------------------------


def _wait_for(url: str, timeout_s: float, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in supervisor.children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.returncode} while starting")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _readiness_urls(settings: FootfallSettings) -> dict[str, str]:
    """Each stage's readiness check, downstream first: the projector (group assigned, ClickHouse accepting), the
    processor (group joined, tables recovered), the collector (Kafka reachable) and the management API (reads, and
    the topics it keeps in memory)."""
    urls = {"projector": f"http://{settings.read_api_host}:{settings.read_api_port}/readyz"}
    if settings.processor_metrics_port:
        host = "127.0.0.1" if settings.processor_metrics_host in ("0.0.0.0", "") else settings.processor_metrics_host
        urls["processor"] = f"http://{host}:{settings.processor_metrics_port}/readyz"
    urls["collector"] = f"http://{settings.collector_host}:{settings.collector_port}/readyz"
    urls["api"] = f"http://{settings.api_host}:{settings.api_port}/readyz"  # the management API reads what the projector wrote
    if settings.webhooks_metrics_port:  # the webhook dispatcher: its definitions loaded
        urls["webhooks"] = f"http://127.0.0.1:{settings.webhooks_metrics_port}/readyz"
    if settings.segments_metrics_port:  # the segment evaluator: its state loaded, ClickHouse answering
        urls["segments"] = f"http://127.0.0.1:{settings.segments_metrics_port}/readyz"
    return urls


# A stage that stops on an error has committed nothing it did not finish: restart it, as a service manager would,
# unless it keeps failing.
RESTART_UNLESS_FAILING = RestartPolicy(max_restarts=5, window_s=60)


@cli.command()
def run(
    broker: Annotated[bool, typer.Option(help="start the local Kafka broker from deploy/ (unless KAFKA_BOOTSTRAP_SERVERS is set)")] = True,
) -> None:
    """Run the whole pipeline on this machine; Ctrl-C stops everything it started, the broker included."""
    from footfall.secrets import admin_key
    from footfall.topics import ensure_topics

    settings = _settings()
    start_broker = broker and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    supervisor = Supervisor(interval_s=0.5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if start_broker:
            subprocess.run([str(KAFKA_SCRIPT), "start"], check=True)
        ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
        admin_key(settings)  # created once, before the projector and `footfall sql` need it
        for stage in (
            "projector",
            "processor",
            "collector",
            "api",
            "segments",
            "webhooks",
        ):  # stopped the other way round, each draining what it was given
            # Own session: a terminal's Ctrl-C reaches only `footfall run`, which stops each stage once, in order.
            supervisor.start(Child(stage, footfall_command(stage), policy=RESTART_UNLESS_FAILING, own_session=True))
        # Running means an event sent now moves through: every stage ready, not just started (each /readyz
        # stays up for operators to watch).
        for stage, url in _readiness_urls(settings).items():
            _wait_for(url, 180, supervisor)
            console.print(f"{stage} ready ({url})")
        console.print(
            f"[bold green]footfall is running.[/bold green] Collector: http://{settings.collector_host}:{settings.collector_port}"
        )
        console.print(
            f"Management API: http://{settings.api_host}:{settings.api_port}   (docs: /api/v1/docs; Authorization: Bearer <admin key in {settings.data_dir / 'admin.key'} or FOOTFALL_ADMIN_KEY>)"
        )
        console.print(f"Web console:    http://{settings.api_host}:{settings.api_port}/   (sign in with the admin key)")
        console.print(
            f'Query it:  footfall sql "SELECT type, event, distinct_id FROM {settings.database}.events"   (Ctrl-C stops everything)'
        )
        reported = 0
        while not stop.is_set():
            exits = [(child.name, e["code"]) for child in supervisor.children for e in child.exits]
            for name, code in exits[reported:]:
                console.print(f"[yellow]{name} exited with code {code}; restarted it[/yellow]")
            reported = len(exits)
            if failing := supervisor.given_up():
                child = failing[0]
                raise RuntimeError(f"{child.name} exited with code {child.returncode}, the 6th time within a minute")
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        console.print("stopping…")
        supervisor.stop()
        if start_broker:
            subprocess.run([str(KAFKA_SCRIPT), "stop"], check=False)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
