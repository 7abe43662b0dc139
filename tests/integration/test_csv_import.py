"""CSV import through the management API on real infrastructure: 100,000 rows with bad rows of every rule
kind mixed in, each refused with its row, column, value and rule; the good ones become users; the same file
again sends nothing; a changed row updates its user."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.reads import ClickHouseReader
from footfall.topics import ensure_topics
from projections.replay import end_offsets
from tests.api_support import wait_ready
from tests.pipeline import processor, projector, wait_until

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-key"}
ROWS = 100_000
HEADER = ["User ID", "E-mail", "First Name", "Tier", "age", "nickname", "homepage", "account", "shoe size"]
# Each kind of bad cell, at a column: (column index, value, rule).
BAD = [
    (1, "not-an-address", "type"),  # built-in email
    (3, "gold", "options"),  # enum
    (4, "17", "minimum"),
    (4, "200", "maximum"),
    (4, "forty", "type"),
    (5, "A", "min_length"),
    (5, "abcdefghijk", "max_length"),
    (5, "ABC", "pattern"),
    (6, "ftp://x", "type"),  # url
    (3, "", "required"),  # Tier is required
    (0, "", "required"),  # no dedupe key
    (0, "undefined", "placeholder"),
]


def good_row(n: int, tier: str = "pro") -> list[str]:
    return [f"u-{n}", f"user{n}@example.com", f"Ann{n % 100}", tier, str(20 + n % 60), "ann", "https://example.com", f"acc-{n}", "42"]


def make_file() -> tuple[bytes, dict[int, tuple[str, str, str]]]:
    """The file and, per bad line (header = line 1), the (column, value, rule) it breaks: about 1 % of the rows."""
    out, bad = io.StringIO(), {}
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for n in range(ROWS):
        cells = good_row(n)
        if n % 97 == 5:
            column, value, rule = BAD[(n // 97) % len(BAD)]
            cells[column] = value
            bad[n + 2] = (HEADER[column], value, rule)
        writer.writerow(cells)
    return out.getvalue().encode(), bad


@pytest.fixture
def api(settings, clickhouse_client):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    app = create_app(settings, "test-admin-key", ClickHouseReader(clickhouse_client, settings.database))
    with TestClient(app) as client:
        wait_ready(client)
        for body in (
            {"name": "plan", "type": "enum", "options": ["free", "pro"], "required": True},
            {"name": "age", "type": "integer", "minimum": 18, "maximum": 130},
            {"name": "nickname", "type": "string", "min_length": 2, "max_length": 10, "pattern": "^[a-z]+$"},
            {"name": "homepage", "type": "url"},
            {"name": "account", "type": "string", "unique": True},
        ):
            assert client.post("/api/v1/property-definitions", json=body, headers=ADMIN).status_code == 201
        yield client


def run_import(api, body: bytes) -> dict:
    started = api.post(
        "/api/v1/imports?dedupe=user_id&mapping=Tier%3Dplan&mapping=E-mail%3Demail",
        content=body,
        headers={**ADMIN, "Content-Type": "text/csv"},
    )
    assert started.status_code == 202, started.text
    return finished_report(api, started.json()["url"], timeout_s=1500, interval_s=1)


def finished_report(api, url: str, **wait) -> dict:
    """The import's report once it is done or failed."""
    return wait_until(
        lambda: (r := api.get(url, headers=ADMIN).json())["state"] in ("done", "failed") and r, what="the import to finish", **wait
    )


def user_commands_sent(settings) -> int:
    return sum(end_offsets(settings, [settings.topics.user_commands.name]).values())


def exactly_once(clickhouse_client, database: str) -> dict[str, int]:
    """Live persons, distinct user ids among them, applied commands and the persons they name: all equal to
    the good rows when each row landed once (a second person for a row would show in the first two)."""
    persons, user_ids = clickhouse_client.query(
        f"SELECT count(), uniqExact(JSONExtractString(properties, 'user_id')) FROM {database}.persons FINAL"
    ).result_rows[0]
    commands, commanded = clickhouse_client.query(f"SELECT count(), uniqExact(person_id) FROM {database}.user_commands FINAL").result_rows[
        0
    ]
    return {"persons": persons, "user_ids": user_ids, "commands": commands, "commanded_persons": commanded}


@pytest.mark.timeout(2400)
def test_a_100k_row_import_with_bad_rows_then_rerun(api, settings, clickhouse_client, tmp_path):
    body, bad = make_file()
    with processor(settings, tmp_path / "logs") as worker, projector(settings) as projection:
        report = run_import(api, body)
        assert report["state"] == "done", report
        assert (report["rows_read"], report["rejected"], report["accepted"]) == (ROWS, len(bad), ROWS - len(bad))
        assert report["created"] == ROWS - len(bad) and report["ignored_columns"] == ["shoe size"]
        errors = list(csv.DictReader(io.StringIO(api.get(f"/api/v1/imports/{report['import_id']}/errors.csv", headers=ADMIN).text)))
        by_row = {int(e["row"]): (e["column"], e["value"], e["rule"]) for e in errors}
        assert by_row == bad  # every bad row, each with its column, value and rule
        assert {rule for _, _, rule in bad.values()} == {
            "type",
            "options",
            "minimum",
            "maximum",
            "min_length",
            "max_length",
            "pattern",
            "required",
            "placeholder",
        }

        def persons() -> int:
            return clickhouse_client.query(
                f"SELECT count() FROM {settings.database}.persons FINAL WHERE JSONExtractString(properties, 'plan') = 'pro'"
            ).result_rows[0][0]

        applied = dict.fromkeys(("persons", "user_ids", "commands", "commanded_persons"), ROWS - len(bad))
        wait_until(
            lambda: persons() == ROWS - len(bad) and exactly_once(clickhouse_client, settings.database) == applied,
            timeout_s=900,
            interval_s=2,
            what="every imported user applied (persons and their commands)",
            watch=(worker, projection),
        )
        landed = exactly_once(clickhouse_client, settings.database)
        assert landed == applied
        sent = user_commands_sent(settings)

        # Re-run at once, as a user would: the identity processor may still be mapping the users' ids (with
        # 100,000 claims it is far behind), and the import must find them anyway.
        again = run_import(api, body)
        assert (again["accepted"], again["unchanged"], again["created"], again["updated"]) == (ROWS - len(bad), ROWS - len(bad), 0, 0)
        assert again["rejected"] == len(bad)
        assert user_commands_sent(settings) == sent  # nothing sent: re-running the file changes nothing
        assert exactly_once(clickhouse_client, settings.database) == landed

        changed = body.replace(b"u-10,user10@example.com,Ann10,pro", b"u-10,user10@example.com,Ann10,free")
        changed = changed.replace(b",acc-11,", b",acc-12,")  # u-12 holds acc-12: unique
        third = run_import(api, changed)
        assert (third["updated"], third["created"], third["unchanged"]) == (1, 0, ROWS - len(bad) - 2)
        assert third["rejected"] == len(bad) + 1
        errors = list(csv.DictReader(io.StringIO(api.get(f"/api/v1/imports/{third['import_id']}/errors.csv", headers=ADMIN).text)))
        assert [(e["row"], e["column"], e["value"], e["rule"]) for e in errors if e["rule"] == "unique"] == [
            ("13", "account", "acc-12", "unique")
        ]

        def plan_of_u10():
            rows = clickhouse_client.query(
                f"SELECT JSONExtractString(properties, 'plan') FROM {settings.database}.persons FINAL WHERE JSONExtractString(properties, 'user_id') = 'u-10'"
            ).result_rows
            return rows and rows[0][0] == "free"

        wait_until(plan_of_u10, timeout_s=120, what="the changed row updates its user", watch=(worker, projection))
        assert exactly_once(clickhouse_client, settings.database) == {
            **landed,
            "commands": ROWS - len(bad) + 1,
        }  # updated, not founded again
    assert persons() == ROWS - len(bad) - 1


def test_a_rerun_before_the_ids_are_mapped_finds_the_users_the_import_created(api, settings, clickhouse_client):
    """No identity processor at all: the creates are applied, no user id is mapped yet (the most the
    processor can lag). The re-run still sends nothing, and a changed row updates its user, founding none."""
    body, bad = make_file()
    small = b"\n".join(body.split(b"\n")[:301]) + b"\n"
    good = 300 - sum(1 for line in bad if line <= 301)
    with projector(settings) as projection:
        first = run_import(api, small)
        assert (first["created"], first["rejected"]) == (good, 300 - good)
        applied = {"persons": good, "user_ids": good, "commands": good, "commanded_persons": good}
        # Every table of the creates, not only persons: the re-run below finds applied rows by their commands.
        wait_until(
            lambda: exactly_once(clickhouse_client, settings.database) == applied,
            timeout_s=120,
            what="the creates applied",
            watch=(projection,),
        )
        assert clickhouse_client.query(f"SELECT count() FROM {settings.database}.person_distinct_ids").result_rows[0][0] == 0
        landed, sent = exactly_once(clickhouse_client, settings.database), user_commands_sent(settings)
        assert landed == applied

        again = run_import(api, small)
        assert (again["accepted"], again["unchanged"], again["created"], again["updated"], again["rejected"]) == (
            good,
            good,
            0,
            0,
            300 - good,
        )
        assert user_commands_sent(settings) == sent

        third = run_import(api, small.replace(b"u-10,user10@example.com,Ann10,pro", b"u-10,user10@example.com,Ann10,free"))
        assert (third["updated"], third["created"], third["unchanged"]) == (1, 0, good - 1)
        wait_until(
            lambda: exactly_once(clickhouse_client, settings.database)["commands"] == good + 1,
            timeout_s=120,
            what="the update applied",
            watch=(projection,),
        )
        assert exactly_once(clickhouse_client, settings.database) == {**landed, "commands": good + 1}
        plans = clickhouse_client.query(
            f"SELECT JSONExtractString(properties, 'plan') FROM {settings.database}.persons FINAL WHERE JSONExtractString(properties, 'user_id') = 'u-10'"
        ).result_rows
        assert plans == [("free",)]


def test_a_file_that_does_not_fit_is_refused_at_once(api):
    answer = api.post("/api/v1/imports?dedupe=email", content=b"User ID,name\nu-1,Ann\n", headers={**ADMIN, "Content-Type": "text/csv"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "dedupe"
    answer = api.post("/api/v1/imports", content=b"user_id\nu-1\n", headers={**ADMIN, "Content-Type": "application/json"})
    assert answer.status_code == 415
    answer = api.post("/api/v1/imports?mapping=nope", content=b"user_id\nu-1\n", headers={**ADMIN, "Content-Type": "text/csv"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["rule"] == "format"


def test_a_dry_run_checks_every_row_and_sends_nothing(api, settings, clickhouse_client):
    body, bad = make_file()
    small = b"\n".join(body.split(b"\n")[:2001]) + b"\n"
    before = user_commands_sent(settings)
    report = run_import_dry(api, small)
    assert report["state"] == "done", report
    assert report["rows_read"] == 2000 and report["rejected"] == sum(1 for line in bad if line <= 2001)
    assert report["created"] == 2000 - report["rejected"]  # what would be created
    assert user_commands_sent(settings) == before


def run_import_dry(api, body: bytes) -> dict:
    started = api.post(
        "/api/v1/imports?dry_run=true&mapping=Tier%3Dplan&mapping=E-mail%3Demail",
        content=body,
        headers={**ADMIN, "Content-Type": "text/csv"},
    )
    assert started.status_code == 202, started.text
    return finished_report(api, started.json()["url"], timeout_s=120)


def test_hostile_bodies_get_a_clear_answer_never_a_5xx(api):
    for body in (b"", b"\xff\xfe\x00garbage", b'"unclosed,header\n', b"user_id\n" + b"x" * 200_000 + b"\n", b"user_id,user_id\nu,u\n"):
        answer = api.post("/api/v1/imports", content=body, headers={**ADMIN, "Content-Type": "text/csv"})
        assert answer.status_code in (202, 422), (body[:20], answer.status_code, answer.text)
        if answer.status_code == 202:
            report = finished_report(api, answer.json()["url"], timeout_s=60)
            assert report["state"] == "failed" or report["rejected"] + report["accepted"] == report["rows_read"]
