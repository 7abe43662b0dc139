"""CSV import, the adapter's chunking (api/imports.py): a chunk's lookups and send overlap the next chunk's
reading, and nothing about what is sent or counted changes. The reads and Kafka are in-memory stand-ins here
(nobody exists yet, every send is recorded); tests/integration/test_csv_import.py runs the real ones."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

import api.imports
from api.commands import Record
from api.import_rows import ImportOptions, ImportRefused
from api.imports import CsvImport, ImportReport
from schemas.properties import BUILT_IN
from schemas.topics import Topics

TOPICS = Topics("t")


class Kafka:
    """Records every send; `fail_at`: the send (1-based) that fails, as Kafka away would."""

    def __init__(self, fail_at: int | None = None):
        self.sends: list[list[Record]] = []
        self.fail_at = fail_at
        self.in_flight = 0
        self.most_in_flight = 0
        self.report: ImportReport | None = None
        self.rows_read_during_sends = 0

    async def send(self, records: list[Record]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        before = self.report.rows_read if self.report else 0
        try:
            await asyncio.sleep(0.001)  # the acknowledgement's round trip: the reader runs meanwhile
            self.rows_read_during_sends += (self.report.rows_read if self.report else 0) - before
            if len(self.sends) + 1 == self.fail_at:
                raise RuntimeError("Kafka did not acknowledge")
            self.sends.append(list(records))
        finally:
            self.in_flight -= 1

    def created_user_ids(self) -> list[str]:
        return [orjson.loads(r.value)["set"]["user_id"] for batch in self.sends for r in batch if r.topic == TOPICS.user_commands.name]


async def nobody(_sql: str, _parameters: dict) -> list[dict]:
    return []


def csv_of(rows: int, bad_every: int = 7, tail: str = "") -> bytes:
    lines = ["user_id,email"] + [f"u-{n},{'nope' if n % bad_every == 3 else f'user{n}@example.com'}" for n in range(rows)]
    return ("\n".join(lines) + "\n" + tail).encode()


def run(body: bytes, kafka: Kafka, tmp_path) -> ImportReport:
    report = kafka.report = ImportReport("i")
    job = CsvImport(report, ImportOptions(), BUILT_IN, nobody, kafka.send, TOPICS, tmp_path / "errors.csv")
    asyncio.run(job.run(io.BytesIO(body)))
    return report


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(api.imports, "CHUNK_ROWS", 10)
    monkeypatch.setattr(api.imports, "STEP_ROWS", 3)


def test_every_good_row_is_sent_once_in_file_order_with_one_chunk_in_flight(tmp_path):
    kafka = Kafka()
    report = run(csv_of(95), kafka, tmp_path)
    good = [f"u-{n}" for n in range(95) if n % 7 != 3]
    assert kafka.created_user_ids() == good
    assert (report.state, report.rows_read, report.accepted, report.created, report.rejected) == (
        "done",
        95,
        len(good),
        len(good),
        95 - len(good),
    )
    assert kafka.most_in_flight == 1 and kafka.rows_read_during_sends > 0  # the next rows were read meanwhile
    errors = (tmp_path / "errors.csv").read_text().splitlines()
    assert len(errors) == 1 + 95 - len(good)


def test_a_failed_send_fails_the_import_and_no_later_chunk_is_sent(tmp_path):
    kafka = Kafka(fail_at=2)
    with pytest.raises(RuntimeError):
        run(csv_of(95), kafka, tmp_path)
    assert len(kafka.sends) == 1  # the first chunk only: nothing after the failed one


def test_the_full_chunks_before_a_line_that_is_not_csv_are_all_sent_and_nothing_after(tmp_path):
    kafka = Kafka()
    too_long = "u-x," + "a" * 200_000 + "\nu-after,after@example.com\n"  # a cell over csv's field limit
    with pytest.raises(ImportRefused):
        run(csv_of(45, tail=too_long), kafka, tmp_path)
    good = [f"u-{n}" for n in range(45) if n % 7 != 3]
    assert kafka.created_user_ids() == good[: len(good) // 10 * 10]  # the chunk being filled is not sent
