"""The hostile-input corpus (tests/hostile/corpus.py) against the real collector and the real broker.

One collector (the app with its lifespan and Kafka writer, behind Starlette's TestClient) takes the whole
corpus once; each case is then checked on its own: the answer (never a 5xx; a 4xx whose reason names the
problem, or 200 for what is accepted by design), the bad rows it left on the dead-letter topic, the raw
events it wrote. The process's memory is measured around the whole corpus.

Slow clients and a spoofed X-Forwarded-For need a real server: they run against a `footfall collector`
subprocess (uvicorn, on a socket).
"""

from __future__ import annotations

import contextlib
import gc
import re
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from footfall.topics import ensure_topics
from schemas.config import FootfallSettings
from schemas.identity import is_illegal_id
from tests.hostile.corpus import CORPUS, MB, SOURCES, WRITE_KEY, Case, Raw, Row, counts, marker
from tests.infra import free_port
from tests.integration.test_collector_support import NO_TESTCLIENT_WARNING, bad_rows, raw_events, running_collector
from tests.pipeline import footfall_process, tail, wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]

MARKER = re.compile(r"~([A-Za-z0-9_.-]+)~")
# How much the process may grow while it takes the whole corpus. The largest buffers a request may make
# are a few MB (a 564 KB wire body, its 500 KB inflation, the parsed calls); the allocator keeps some of
# what it freed, and the producer buffers records until Kafka acknowledges them (small here). A gzip bomb
# inflated without a bound would add 1 GB, a body read without a bound 5 MB per chunked case: 200 MB
# tells "bounded" from "not" with a wide margin either way, on a shared 2-core machine.
MAX_GROWTH_BYTES = 200 * MB


# -- the corpus, sent once -------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None
    content_type: str
    body: bytes
    error: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Run:
    answers: dict[str, Answer]
    rows: dict[str, list[dict]]  # the bad rows whose payload carries a case's marker, by case name
    unmarked_rows: list[dict]
    raw: list[dict]
    rss_before: int
    rss_after: int
    peak_growth: int | None  # VmHWM after the corpus minus RSS before, when the kernel let us reset VmHWM


def memory(field: str) -> int:
    """VmRSS or VmHWM of this process (the app runs in it, behind the TestClient), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def send(client, case: Case):
    body = case.body
    content: Any = body if body or case.method == "POST" else None
    if case.chunked:  # no Content-Length: the collector must stop reading by itself
        content = iter([body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)])
    return client.request(case.method, case.path, content=content, headers=dict(case.headers))


@pytest.fixture(scope="module")
def hostile_settings(kafka_bootstrap) -> FootfallSettings:
    settings = FootfallSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"test-hostile-{uuid.uuid4().hex[:10]}", partitions=3)
    ensure_topics(kafka_bootstrap, settings.topics.all())
    return settings


@pytest.fixture(scope="module")
def run(hostile_settings, tmp_path_factory) -> Run:
    with running_collector(hostile_settings, tmp_path_factory.mktemp("hostile"), SOURCES) as client:
        assert client.get("/readyz").status_code == 200
        gc.collect()
        before = memory("VmRSS")
        peak_known = reset_peak()
        answers: dict[str, Answer] = {}
        for case in CORPUS:
            try:
                response = send(client, case)
                answers[case.name] = Answer(response.status_code, response.headers.get("content-type", ""), response.content)
            except Exception as exc:  # noqa: BLE001 - reported per case
                answers[case.name] = Answer(None, "", b"", f"{type(exc).__name__}: {exc}")
        gc.collect()
        after = memory("VmRSS")
        peak = memory("VmHWM") - before if peak_known else None
    rows: dict[str, list[dict]] = defaultdict(list)
    unmarked = []
    for message in bad_rows(hostile_settings):
        found = MARKER.search(message.value["payload"])
        (rows[found.group(1)] if found else unmarked).append(message.value)
    return Run(answers, dict(rows), unmarked, [m.value | {"_key": m.key} for m in raw_events(hostile_settings)], before, after, peak)


# -- what each answer must be -------------------------------------------------------------------------------


def names(problem: dict) -> str:
    return f"{problem.get('field')} {problem.get('reason')}".lower()


def answer_problems(case: Case, answer: Answer) -> list[str]:
    if answer.error:
        return [f"the request failed: {answer.error}"]
    found = []
    if answer.status is None or answer.status >= 500:
        found.append(f"answered {answer.status}")
    if answer.status != case.status:
        found.append(f"status {answer.status}, expected {case.status}")
    if answer.content_type == "image/gif":
        return found if case.path.startswith("/v1/pixel") else [*found, "a GIF outside the pixel"]
    try:
        body = answer.json()
    except orjson.JSONDecodeError:
        return [*found, f"not JSON: {answer.body[:200]!r}"]
    problems = list(body.get("errors", [])) + [p for rejected in body.get("rejected", []) for p in rejected["errors"]]
    if not all(isinstance(p.get("field"), str) and p["field"] and isinstance(p.get("reason"), str) and p["reason"] for p in problems):
        found.append(f"a problem without a field or a reason: {problems}")
    if case.status >= 400 and (body.get("success") is not False or not body.get("errors")):
        found.append(f"a refusal must say success: false and name its errors: {body}")
    if case.status == 200:
        if body.get("success") is not True:
            found.append(f"not a success: {body}")
        if [r["index"] for r in body.get("rejected", [])] != list(case.rejected):
            found.append(f"rejected {[r['index'] for r in body.get('rejected', [])]}, expected {list(case.rejected)}")
    if case.word and not any(case.word.lower() in names(p) for p in problems):
        found.append(f"no error names {case.word!r}: {problems}")
    return found


def row_matches(row: dict, spec: Row) -> bool:
    return (
        row["stage"] == "collector"
        and row["index"] == spec.index
        and any(spec.word.lower() in names(p) for p in row["problems"])
        # A refused call (with an index) is kept with its source; a body refused before the key is known, without.
        and (spec.index is None or row["source_id"] == "hostile")
    )


def unmatched(specs: list[Row], rows: list[dict]) -> tuple[list[Row], list[dict]]:
    """Pair each expected row with a distinct actual one; what is left over on each side."""
    left = list(rows)
    missing = []
    for spec in specs:
        match = next((row for row in left if row_matches(row, spec)), None)
        if match is None:
            missing.append(spec)
        else:
            left.remove(match)
    return missing, left


def raw_problems(spec: Raw, raw: list[dict]) -> list[str]:
    found = [event for event in raw if all(event.get(field) == value for field, value in spec.match)]
    problems = []
    if len(found) != spec.count:
        near = [event for event in raw if event.get(spec.match[0][0]) == spec.match[0][1]]
        problems.append(
            f"{len(found)} raw events match {spec.match}, expected {spec.count}; by {spec.match[0][0]} alone: "
            f"{[{k: e.get(k) for k, _ in spec.match} for e in near]}"
        )
    if spec.flag and not all(spec.flag in event["flags"] for event in found):
        problems.append(f"flag {spec.flag} missing: {[event['flags'] for event in found]}")
    return problems


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_case(run, case):
    answer = run.answers[case.name]
    problems = answer_problems(case, answer)
    rows = run.rows.get(case.name, [])
    missing, extra = unmatched([spec for spec in case.bad_rows if spec.marked], rows)
    problems += [f"no bad row {spec}" for spec in missing] + [f"unexpected bad row {row['index']}: {row['problems']}" for row in extra]
    if answer.content_type == "image/gif" and case.word and not any(case.word.lower() in names(p) for row in rows for p in row["problems"]):
        problems.append(f"no bad row names {case.word!r}")  # the pixel answers a GIF: its reason is on the bad row
    for spec in case.raw:
        problems += raw_problems(spec, run.raw)
    assert not problems, f"{case.name} ({case.kind}{', accepted by design: ' + case.note if case.by_design else ''}):\n  " + "\n  ".join(
        problems
    )


def test_no_case_is_answered_5xx_or_crashes(run):
    """The same promise as the per-case tests, as one list: every case that got a 5xx or no answer."""
    failed = {name: answer.error or answer.status for name, answer in run.answers.items() if answer.error or (answer.status or 500) >= 500}
    assert not failed, f"{len(failed)} of {len(CORPUS)} cases: {failed}"


def test_bodies_without_a_marker_are_kept_too(run):
    """Bad rows whose payload cannot carry the case's marker (compressed, empty, too deeply nested to
    write back) are matched by index and reason over the whole corpus; none may be missing or unexpected."""
    specs = [spec for case in CORPUS for spec in case.bad_rows if not spec.marked]
    missing, extra = unmatched(specs, run.unmarked_rows)
    assert not missing, f"{len(missing)} bad rows never written: {missing}"
    assert not extra, f"{len(extra)} unexpected bad rows: {[(r['index'], r['problems'], r['payload'][:80]) for r in extra]}"
    assert not set(run.rows) - {case.name for case in CORPUS}, "bad rows marked by no case"


def test_nothing_else_reaches_the_raw_topic(run):
    """Each raw event belongs to a case that expected it: nothing refused was written."""
    expected = sum(spec.count for case in CORPUS for spec in case.raw)
    claimed = [event for event in run.raw if any(all(event.get(f) == v for f, v in spec.match) for case in CORPUS for spec in case.raw)]
    assert len(run.raw) == expected == len(claimed), [e["message_id"] for e in run.raw if e not in claimed]
    # No placeholder id is a Kafka key (the device key) or an anonymous_id: such an anonymousId is dropped, the userId keys the event.
    assert not [
        (e["_key"], e["anonymous_id"])
        for e in run.raw
        if is_illegal_id(e["_key"]) or (e["anonymous_id"] is not None and is_illegal_id(e["anonymous_id"]))
    ]
    dropped = [e for e in run.raw if e["message_id"].startswith("hostile-id-dropped-anonymousId")]
    assert len(dropped) >= 7 and all(e["_key"] == e["user_id"] and "placeholder_anonymous_id" in e["flags"] for e in dropped)


def test_memory_stays_bounded(run):
    growth = run.rss_after - run.rss_before
    assert growth < MAX_GROWTH_BYTES, f"RSS grew by {growth / MB:.0f} MB over the corpus"
    if run.peak_growth is not None:
        assert run.peak_growth < MAX_GROWTH_BYTES, f"RSS peaked {run.peak_growth / MB:.0f} MB above its start during the corpus"


def test_the_corpus_covers_every_class():
    found = counts()
    assert sum(refused for refused, _ in found.values()) >= 200
    assert {
        "invalid-json",
        "invalid-utf8",
        "wrong-type",
        "nan-infinity",
        "enormous-number",
        "over-limit",
        "deep-nesting",
        "oversized-batch",
        "gzip",
        "ids",
        "illegal-id",
        "timestamp",
        "unknown-type",
        "content-type",
        "write-key",
        "origin",
    } <= set(found)


# -- a real server: slow clients, and a spoofed X-Forwarded-For -------------------------------------------------

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
SLACK_S = 3.0  # scheduling on a busy 2-core machine


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory) -> Iterator[tuple[str, FootfallSettings, Path]]:
    """A `footfall collector` process with short read deadlines, behind a trusted proxy that is not us."""
    settings = FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"test-hostile-srv-{uuid.uuid4().hex[:10]}",
        partitions=3,
        collector_port=free_port(),
    )
    ensure_topics(kafka_bootstrap, settings.topics.all())
    log_dir = tmp_path_factory.mktemp("hostile-server")
    url = f"http://127.0.0.1:{settings.collector_port}"
    env = {
        "FOOTFALL_WRITE_KEYS": f"{WRITE_KEY}=hostile",
        "FOOTFALL_COLLECTOR_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FOOTFALL_COLLECTOR_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "FOOTFALL_TRUSTED_PROXIES": "192.0.2.1",
    }
    with footfall_process("collector", settings, log_dir, **env) as proc:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"collector exited:\n{tail(log_dir / 'collector.log')}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            return False

        wait_until(ready, 60, what="collector /readyz")
        yield url, settings, log_dir / "collector.log"


class SlowClient:
    """A raw socket that sends `data` one byte per tick and notices when the server closes it."""

    def __init__(self, port: int, data: bytes, label: str):
        self.label = label
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.data = data
        self.sent = 0
        self.opened = time.monotonic()
        self.closed_after: float | None = None
        self.received = b""

    def tick(self) -> None:
        if self.closed_after is not None:
            return
        if self.sent < len(self.data):
            try:
                self.sock.send(self.data[self.sent : self.sent + 1])
                self.sent += 1
            except OSError:
                self._closed()
                return
        self.poll()

    def poll(self) -> None:
        while self.closed_after is None:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._closed()
                return
            if not chunk:
                self._closed()
                return
            self.received += chunk

    def _closed(self) -> None:
        self.closed_after = time.monotonic() - self.opened
        self.sock.close()


def test_slow_clients_are_cut_off_while_others_are_served(server):
    url, _settings, log = server
    port = int(url.rsplit(":", 1)[1])
    headers = (
        b"POST /v1/track HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\nX-Write-Key: " + WRITE_KEY.encode() + b"\r\n"
    )
    body = orjson.dumps({"type": "track", "event": "Slow", "anonymousId": "slow"})
    clients = [SlowClient(port, headers + b"Content-Length: 100\r\n\r\n", f"slow-headers-{i}") for i in range(20)]
    clients.append(SlowClient(port, b"", "idle"))
    clients += [SlowClient(port, headers + b"Content-Length: %d\r\n\r\n%s" % (len(body), body), f"slow-body-{i}") for i in range(3)]
    for client in clients[-3:]:
        client.sent = len(headers) + len(b"Content-Length: %d\r\n\r\n" % len(body))  # headers at once, then the body a byte a tick
        client.sock.send(client.data[: client.sent])
    served: list[tuple[int, float]] = []
    deadline = time.monotonic() + max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 3 * SLACK_S
    with httpx.Client(base_url=url, timeout=5) as normal:
        n = 0
        while time.monotonic() < deadline and any(c.closed_after is None for c in clients):
            for client in clients:
                client.tick()
            started = time.monotonic()
            n += 1
            response = normal.post(
                "/v1/track", json={"type": "track", "event": "Normal", "anonymousId": f"normal-{n}"}, headers={"X-Write-Key": WRITE_KEY}
            )
            served.append((response.status_code, time.monotonic() - started))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    open_still = [c.label for c in clients if c.closed_after is None]
    for client in clients:
        if client.closed_after is None:
            client.sock.close()
    assert not open_still, f"still open after {deadline:.0f}s: {open_still}"
    header_clients = [c for c in clients if not c.label.startswith("slow-body")]
    assert all(c.closed_after < HEADER_TIMEOUT_S + SLACK_S for c in header_clients), [
        (c.label, round(c.closed_after, 1)) for c in header_clients
    ]
    assert all(c.received.startswith(b"HTTP/1.1 408") and b'"field":"headers"' in c.received for c in header_clients), [
        c.received[:60] for c in header_clients
    ]
    body_clients = clients[-3:]
    assert all(c.closed_after < BODY_TIMEOUT_S + SLACK_S for c in body_clients), [(c.label, round(c.closed_after, 1)) for c in body_clients]
    for client in body_clients:
        head, _, answer = client.received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), head
        assert orjson.loads(answer)["errors"][0]["field"] == "body"
    # Everyone else was served all along, promptly.
    assert served and all(status == 200 for status, _ in served), served
    assert max(seconds for _, seconds in served) < 2.0, served
    assert WRITE_KEY not in log.read_text(), "the write key is in the collector's log"


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(server):
    url, settings, _log = server
    spoofed = {
        "X-Write-Key": WRITE_KEY,
        "X-Forwarded-For": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "X-Forwarded-Proto": "https",
    }
    response = httpx.post(
        f"{url}/v1/track",
        json={"type": "track", "event": "Spoof", "anonymousId": "spoof", "messageId": "spoofed-xff"},
        headers=spoofed,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [event] = [m.value for m in raw_events(settings) if m.value["message_id"] == "spoofed-xff"]
    assert event["ip"] == "127.0.0.1"  # the peer: FOOTFALL_TRUSTED_PROXIES names 192.0.2.1 only


def test_markers_are_unique():
    assert all(MARKER.fullmatch(marker(case.name)) for case in CORPUS)
