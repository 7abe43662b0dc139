"""`footfall loadgen`: send the traffic model's calls (or a recorded file) to a collector, and count what came back.

    report = await run_load("http://127.0.0.1:8080", "dev-write-key", traffic.calls(seed=1), events=10_000,
                            rate=2_000, batch_size=50)
    report.acks  # [(messageId, ack wall-clock time), ...]: freshness is "queryable" minus this

How it sends, like an SDK would:
- single calls to /v1/<type>, or batches to /v1/batch (`batch_size`; a batch is split when its body
  would pass the collector's 500 KB limit);
- at `rate` calls/s (paced by aiolimiter; 0: as fast as `concurrency` connections go), for `events` calls
  or `duration` seconds, whichever ends first;
- 429 and 5xx answers and transport failures are retried (up to `max_retries`), after the answer's
  Retry-After when it has one, else after an exponential backoff; other 4xx answers are final. As with
  any SDK, a retried timeout can deliver a call twice (same messageId: the pipeline deduplicates);
- `sentAt` is set to the wall clock at each attempt, as SDKs do, so the collector's clock correction
  (receivedAt − (sentAt − timestamp)) keeps the model's simulated `timestamp` as event time
  (`model_sent_at=True` sends the model's own sentAt instead: every event then lands at its arrival time).

An event counts as acknowledged when the collector answered 200 for it (it is in Kafka then); its
messageId and the wall-clock time of that answer (time.time()) are kept in `LoadReport.acks` and
written to `acks_path` (CSV when the name ends in .csv, JSON lines otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import re
import ssl
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from aiolimiter import AsyncLimiter
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from footfall.traffic import Summary
from schemas.tracking import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_WAIT_S = 60.0
USER_AGENT = "footfall-loadgen/0.1"


# -- record and replay -------------------------------------------------------------------------------------


def write_calls(path: Path, calls: Iterable[dict[str, Any]]) -> Summary:
    """Write calls as JSON lines (one call a line, as generated); answers what was written."""
    summary = Summary()
    with open(path, "wb") as out:
        for call in calls:
            out.write(orjson.dumps(call) + b"\n")
            summary.add(call)
    return summary


def read_calls(path: Path) -> Iterator[dict[str, Any]]:
    """The calls of a file written by `write_calls` (or any JSON lines of Segment calls), in order."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                call = orjson.loads(line)
                if not isinstance(call, dict) or "type" not in call:
                    raise ValueError(f"{path}:{number}: not a Segment call (a JSON object with a type)")
                yield call


def parse_duration(text: str) -> float:
    """'30s', '2m', '1h', '1m30s', '500ms' or plain seconds ('45', '2.5') as seconds."""
    text = text.strip().lower()
    with contextlib.suppress(ValueError):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 2m, 1h30m, 500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


# -- the report --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    target_rate: float = 0.0  # calls/s asked for; 0: as fast as possible
    sent: int = 0  # calls put on the wire (at least once)
    acknowledged: int = 0  # calls the collector answered 200 for
    rejected: Counter = field(default_factory=Counter)  # calls given up on, by their last status ("400", "429", "ConnectError")
    errors: Counter = field(default_factory=Counter)  # every error answer or transport failure, retried ones included
    requests: int = 0  # HTTP requests, retries included
    retries: int = 0
    waited_s: float = 0.0  # time requests spent waiting to be retried (Retry-After, else backoff), summed
    seconds: float = 0.0  # from the first request to the last answer (the achieved rate's time)
    started_at: float = 0.0  # wall clock (time.time()) of the start
    latencies_ms: array = field(default_factory=lambda: array("d"), repr=False)  # per answered request
    summary: Summary = field(default_factory=Summary, repr=False)  # what was sent
    acks: list[tuple[str, float]] = field(default_factory=list, repr=False)  # (messageId, ack time.time())

    @property
    def achieved_rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        """Calls sent but neither acknowledged nor finally rejected (only when a run was cut short)."""
        return self.sent - self.acknowledged - sum(self.rejected.values())

    def latency_ms(self, quantile: float) -> float | None:
        return _quantile(sorted(self.latencies_ms), quantile)

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "rejected": dict(self.rejected),
            "errors": dict(self.errors),
            "requests": self.requests,
            "retries": self.retries,
            "waited_s": round(self.waited_s, 3),
            "seconds": round(self.seconds, 3),
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "latency_ms": {f"p{round(q * 100)}": _round(_quantile(ordered, q)) for q in (0.5, 0.95, 0.99)},
            "generated": self.summary.as_dict(),
        }


def _quantile(ordered: list[float], quantile: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{status}: {count:,}" for status, count in counter.most_common()) or "0"


def report_table(report: LoadReport) -> Table:
    """The final summary, for a terminal."""
    ordered = sorted(report.latencies_ms)
    latency = " / ".join("-" if (v := _quantile(ordered, q)) is None else f"{v:.1f}" for q in (0.5, 0.95, 0.99))
    target = f"{report.target_rate:,.0f}/s" if report.target_rate else "as fast as possible"
    table = Table("loadgen", "", show_header=False, title="footfall loadgen")
    table.add_row(
        "sent", f"{report.sent:,} calls in {report.requests:,} requests ({report.retries:,} retries, {report.waited_s:.1f} s waited)"
    )
    table.add_row("acknowledged", f"{report.acknowledged:,}")
    table.add_row("rejected (by status)", _counts(report.rejected))
    table.add_row("error answers (incl. retried)", _counts(report.errors))
    if report.lost:
        table.add_row("unanswered", f"{report.lost:,}")
    table.add_row("elapsed", f"{report.seconds:.2f} s")
    table.add_row("achieved rate", f"{report.achieved_rate:,.0f} calls/s acknowledged (target {target})")
    table.add_row("latency p50 / p95 / p99", f"{latency} ms per request")
    table.add_row("calls by type", ", ".join(f"{t}: {n:,}" for t, n in sorted(report.summary.by_type.items())) or "-")
    table.add_row("devices / users / sessions", f"{report.summary.devices:,} / {report.summary.users:,} / {report.summary.sessions:,}")
    if report.summary.first_timestamp:
        table.add_row("simulated time", f"{report.summary.first_timestamp} → {report.summary.last_timestamp}")
    return table


def summary_table(summary: Summary, title: str) -> Table:
    """What a traffic stream holds (for `--write`)."""
    table = Table("", "", show_header=False, title=title)
    table.add_row("calls", f"{summary.calls:,}")
    for call_type, count in sorted(summary.by_type.items()):
        table.add_row(f"  {call_type}", f"{count:,}")
    table.add_row("devices / users / sessions", f"{summary.devices:,} / {summary.users:,} / {summary.sessions:,}")
    if summary.first_timestamp:
        table.add_row("simulated time", f"{summary.first_timestamp} → {summary.last_timestamp}")
    return table


# -- requests ----------------------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(calls: list[dict[str, Any]], batch: bool, sent_at: str | None) -> tuple[str, bytes]:
    """The path and body of one request; `sent_at` replaces each call's sentAt (None: keep the model's)."""
    if sent_at is not None:
        calls = [{**call, "sentAt": sent_at} for call in calls]
    if not batch:
        return f"/v1/{calls[0]['type']}", orjson.dumps(calls[0])
    body: dict[str, Any] = {"batch": calls}
    if sent_at is not None:
        body["sentAt"] = sent_at
    return "/v1/batch", orjson.dumps(body)


def fitting(calls: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """`calls` as batches whose bodies stay under the collector's limit (halved until they do)."""
    if len(calls) > 1 and len(encode(calls, True, now_iso())[1]) > MAX_BATCH_BYTES:
        middle = len(calls) // 2
        yield from fitting(calls[:middle])
        yield from fitting(calls[middle:])
    else:
        yield calls


def retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def rejected_indexes(response: httpx.Response) -> set[int]:
    """The batch answer's `rejected[].index` (calls refused one by one while the others were accepted)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    return {item["index"] for item in body.get("rejected") or () if isinstance(item, dict) and isinstance(item.get("index"), int)}


class _Sender:
    """What the workers share: the report, the acks file and how to send."""

    def __init__(
        self, report: LoadReport, batch: bool, model_sent_at: bool, max_retries: int, acks_out: IO[bytes] | None, csv: bool, keep_acks: bool
    ):
        self.report = report
        self.batch = batch
        self.model_sent_at = model_sent_at
        self.max_retries = max_retries
        self.acks_out = acks_out
        self.csv = csv
        self.keep_acks = keep_acks
        self.first_request: float | None = None
        self.last_answer = time.monotonic()
        self.recent_acks: deque[tuple[float, int]] = deque()  # (monotonic time, count) for the live rate

    async def send(self, client: httpx.AsyncClient, calls: list[dict[str, Any]]) -> None:
        for part in fitting(calls) if self.batch else [calls]:
            await self._send(client, part)

    async def _send(self, client: httpx.AsyncClient, calls: list[dict[str, Any]]) -> None:
        report = self.report
        report.sent += len(calls)
        attempt = 0
        while True:
            path, body = encode(calls, self.batch, None if self.model_sent_at else now_iso())
            report.requests += 1
            if self.first_request is None:
                self.first_request = time.monotonic()
            started = time.perf_counter()
            wait = None
            try:
                response = await client.post(path, content=body)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            else:
                report.latencies_ms.append((time.perf_counter() - started) * 1000)
                status = str(response.status_code)
                if response.status_code == 200:
                    refused = rejected_indexes(response) if self.batch else set()
                    self._acknowledged([c for i, c in enumerate(calls) if i not in refused])
                    if refused:
                        report.rejected["400"] += len(refused)
                    return
                if response.status_code not in RETRYABLE_STATUSES:
                    report.errors[status] += 1
                    report.rejected[status] += len(calls)
                    self.last_answer = time.monotonic()
                    return
                wait = retry_after_s(response)
            report.errors[status] += 1
            attempt += 1
            if attempt > self.max_retries:
                report.rejected[status] += len(calls)
                self.last_answer = time.monotonic()
                return
            report.retries += 1
            if wait is None:
                wait = min(10.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())  # jitter: no secret
            wait = min(wait, MAX_RETRY_WAIT_S)
            report.waited_s += wait
            await asyncio.sleep(wait)

    def _acknowledged(self, calls: list[dict[str, Any]]) -> None:
        acked_at = time.time()
        self.last_answer = time.monotonic()
        self.report.acknowledged += len(calls)
        self.recent_acks.append((self.last_answer, len(calls)))
        ids = [call.get("messageId") for call in calls]
        if self.keep_acks:
            self.report.acks.extend((message_id, acked_at) for message_id in ids)
        if self.acks_out is not None:
            if self.csv:
                self.acks_out.write("".join(f"{message_id},{acked_at:.6f}\n" for message_id in ids).encode())
            else:
                self.acks_out.write(b"".join(orjson.dumps({"messageId": m, "ackedAt": acked_at}) + b"\n" for m in ids))


# -- the run -----------------------------------------------------------------------------------------------


async def run_load(
    url: str,
    write_key: str,
    calls: Iterable[dict[str, Any]],
    *,
    rate: float = 1_000.0,
    batch_size: int = 0,
    concurrency: int = 16,
    events: int | None = None,
    duration: float | None = None,
    acks_path: Path | None = None,
    keep_acks: bool = True,
    model_sent_at: bool = False,
    max_retries: int = 10,
    timeout: float = 30.0,
    console: Console | None = None,
    stop: asyncio.Event | None = None,
) -> LoadReport:
    """Send `calls` to the collector at `url` and report what became of them.

    `batch_size` 0 sends each call to /v1/<type>; N sends /v1/batch requests of up to N calls. `rate` is in
    calls per second (0: as fast as possible); the run ends after `events` calls or `duration` seconds,
    whichever comes first, or when `calls` (or `stop`) ends; calls already sent are then still answered.
    With a `console`, a live progress bar shows rate, errors and latency. `keep_acks=False` keeps no
    per-call acks in memory (for long runs; write them to `acks_path` instead)."""
    if batch_size < 0 or batch_size > MAX_BATCH_EVENTS:
        raise ValueError(f"batch_size must be 0 (single calls) to {MAX_BATCH_EVENTS}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if rate < 0:
        raise ValueError("rate must be >= 0 (0: as fast as possible)")
    per_request = batch_size or 1
    report = LoadReport(target_rate=rate, started_at=time.time())
    # A leaky bucket holding a twentieth of a second's calls, and at least two requests': steady pacing, small
    # bursts. A bucket of exactly one request's calls must drain empty before every request, and each wait's
    # overshoot then comes off the rate (about 5% at 1,000 calls/s in batches of 50).
    burst = max(2 * per_request, rate * 0.05)
    pacing = AsyncLimiter(burst, time_period=burst / rate) if rate else None
    queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=concurrency * 2)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json", "User-Agent": USER_AGENT}
    # A client of one connection per worker: httpcore's shared pool spends time growing with its size on
    # every request (3x fewer requests/s at 16 connections than at 4 here), a pool of one does not.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    tls = ssl.create_default_context()  # loaded once, not once per client
    started = time.monotonic()
    deadline = started + duration if duration else None

    async def produce() -> None:
        taken = 0
        source = iter(calls)
        while not (stop and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
            want = per_request if events is None else min(per_request, events - taken)
            if want <= 0:
                break
            chunk = list(islice(source, want))
            if not chunk:
                break
            if pacing is not None:
                await pacing.acquire(len(chunk))
            for call in chunk:
                report.summary.add(call)
            taken += len(chunk)
            await queue.put(chunk)

    async def work(sender: _Sender) -> None:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, limits=limits, timeout=timeout, verify=tls) as client:
            while (chunk := await queue.get()) is not None:
                await sender.send(client, chunk)

    progress = _LiveProgress(console, report, events, duration) if console is not None else None
    with contextlib.ExitStack() as closing:
        acks_out = closing.enter_context(open(acks_path, "wb")) if acks_path else None
        if acks_out is not None and acks_path.suffix == ".csv":
            acks_out.write(b"message_id,acked_at\n")
        sender = _Sender(
            report, batch_size > 0, model_sent_at, max_retries, acks_out, acks_path is not None and acks_path.suffix == ".csv", keep_acks
        )
        workers = [asyncio.create_task(work(sender)) for _ in range(concurrency)]
        ticker = asyncio.create_task(progress.run(sender, started)) if progress else None
        try:
            await produce()
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if sender.first_request is not None:
                report.seconds = max(0.0, sender.last_answer - sender.first_request)
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                progress.finish(sender, started)
    return report


class _LiveProgress:
    """A rich progress bar: calls answered of the total (or time of the duration), rate, errors, latency."""

    WINDOW_S = 2.0

    def __init__(self, console: Console, report: LoadReport, events: int | None, duration: float | None):
        self.report = report
        self.by_time = events is None and duration is not None
        self.progress = Progress(
            TextColumn("[bold]loadgen"),
            BarColumn(bar_width=20),
            MofNCompleteColumn() if not self.by_time else TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=False,
        )
        total = duration if self.by_time else events
        self.task: TaskID = self.progress.add_task("send", total=total, stats="")

    def stats(self, sender: _Sender) -> str:
        report = self.report
        now = time.monotonic()
        while sender.recent_acks and sender.recent_acks[0][0] < now - self.WINDOW_S:
            sender.recent_acks.popleft()
        window = min(self.WINDOW_S, now - sender.first_request) if sender.first_request else 0.0
        rate = sum(n for _, n in sender.recent_acks) / window if window > 0.1 else 0.0
        recent = sorted(report.latencies_ms[-2000:])
        p50, p99 = _quantile(recent, 0.5), _quantile(recent, 0.99)
        errors = f"[red]{_counts(report.errors)}[/red]" if report.errors else "0"
        latency = f"p50 {p50:.1f} / p99 {p99:.1f} ms" if p50 is not None else "p50 - / p99 -"
        return f"{rate:,.0f}/s · acked {report.acknowledged:,} · errors {errors} · {latency}"

    def update(self, sender: _Sender, started: float) -> None:
        done = time.monotonic() - started if self.by_time else self.report.acknowledged + sum(self.report.rejected.values())
        self.progress.update(self.task, completed=done, stats=self.stats(sender))

    async def run(self, sender: _Sender, started: float) -> None:
        self.progress.start()
        while True:
            self.update(sender, started)
            await asyncio.sleep(0.25)

    def finish(self, sender: _Sender, started: float) -> None:
        self.update(sender, started)
        self.progress.stop()
