"""The projector reads envelopes (projections.projector.RecordDecoder): any split of the same events into
records gives the same rows as one event per record, and an unreadable event is dead-lettered alone."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import rows
from projections.directory import Directory
from projections.projector import Batch, RecordDecoder
from projections.rows import Overrides
from schemas.envelope import COUNT_HEADER, VERSION_HEADER, Envelope, pack
from schemas.events import EnrichedEvent
from schemas.identity import DistinctIdMapping, PersonIdentity, PersonMerge
from schemas.sessions import SessionMerge, SessionUpdate
from schemas.topics import Topics

TOPICS = Topics(prefix="t", partitions=1)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ids = st.sampled_from(["a", "b", "c", "d"])
times = st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s))
# Bytes no reader can use: not JSON, JSON of the wrong shape. (Never a raw newline: envelopes hold compact JSON.)
garbage = st.sampled_from([b"not json", b"{}", b'{"message_id": 1}', b"[1,2]", b'"\\u00e9"'])

enriched = st.builds(
    lambda n, device, user, session, person, at: EnrichedEvent(
        message_id=f"m-{n}",
        type="track",
        event="E",
        anonymous_id=device,
        user_id=user,
        timestamp=at,
        received_at=at,
        source_id="web",
        session_id=f"s-{session}",
        person_id=f"p-{person}",
        properties={"n": n},
    ),
    st.integers(0, 50),
    ids,
    st.none() | ids,
    ids,
    ids,
    times,
)
session_update = st.builds(
    lambda session, device, version, at: SessionUpdate(
        session_id=f"s-{session}",
        device_key=device,
        version=version,
        status="open",
        start=at,
        end=at,
        duration_seconds=0,
        event_count=version,
        pageview_count=0,
        bounced=True,
    ),
    ids,
    ids,
    st.integers(1, 5),
    times,
)
session_merge = st.builds(
    lambda absorbed, survivor, device, version: SessionMerge(
        absorbed_session_id=f"s-{absorbed}", survivor_session_id=f"s-{survivor}", device_key=device, version=version
    ),
    ids,
    ids,
    ids,
    st.integers(1, 5),
)
mapping = st.builds(lambda d, p, v: DistinctIdMapping(distinct_id=d, person_id=f"p-{p}", version=v), ids, ids, st.integers(1, 5))
person = st.one_of(
    st.builds(
        lambda f, i, v, at: PersonMerge(from_person=f"p-{f}", into_person=f"p-{i}", version=v, reason="identify", timestamp=at),
        ids,
        ids,
        st.integers(1, 5),
        times,
    ),
    st.builds(
        lambda p, n: PersonIdentity(person_id=f"p-{p}", visitor_number=n, identified=True, is_contact=False, version=n),
        ids,
        st.integers(1, 9),
    ),
)


def values(models) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.one_of(models.map(lambda m: m.model_dump_json().encode()), garbage), max_size=25)


streams = st.fixed_dictionaries(
    {
        TOPICS.enriched.name: values(enriched),
        TOPICS.sessions.name: values(st.one_of(session_update, session_merge)),
        TOPICS.identities.name: values(mapping),
        TOPICS.persons.name: values(person),
    }
)


class Record:
    """What the decoder asks of a confluent-kafka Message."""

    def __init__(self, topic: str, offset: int, value: bytes, headers: list[tuple[str, bytes]] | None):
        self._topic, self._offset, self._value, self._headers = topic, offset, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def one_per_record(topic: str, events: list[bytes]) -> list[Record]:
    return [Record(topic, offset, value, None) for offset, value in enumerate(events)]


def split(topic: str, events: list[bytes], cuts: list[int], plain: set[int]) -> list[Record]:
    """The events in envelopes cut at `cuts`; an envelope of one whose index is in `plain` goes as a plain record."""
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    records = []
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        part = events[start:end]
        if len(part) == 1 and n in plain:
            records.append(Record(topic, len(records), part[0], None))
        else:
            [envelope] = pack(part, _unbounded())
            records.append(Record(topic, len(records), envelope.value, envelope.headers))
    return records


def _unbounded():
    from schemas.envelope import EnvelopeLimits

    return EnvelopeLimits(max_events=10**6, max_bytes=10**9)


def decode(records_by_topic: dict[str, list[Record]]) -> Batch:
    decoder = RecordDecoder(TOPICS, Overrides(), Overrides(), Directory())
    batch = Batch()
    for topic in decoder.handlers:  # one fixed order of topics: only each topic's own order matters to a batch
        for record in records_by_topic.get(topic, []):
            decoder.add(batch, record)
    return batch


def projected(batch: Batch) -> tuple:
    """The batch's rows (events without _partition/_offset, which say where a row came from) and what it says
    about persons, and the dead-letter rows without their time."""
    tables = {table: list(found) for table, found in batch.rows.items() if found}
    if rows.EVENTS.name in tables:
        tables[rows.EVENTS.name] = [row[:-2] for row in tables[rows.EVENTS.name]]
    bad = [{k: v for k, v in orjson.loads(row).items() if k not in ("received_at", "origin")} for row in batch.bad_rows]
    return tables, batch.persons, bad


@settings(max_examples=150, deadline=None)
@given(streams, st.lists(st.integers(0, 100), max_size=12), st.sets(st.integers(0, 12)))
def test_any_split_into_envelopes_projects_the_same_rows_as_one_event_per_record(stream, cuts, plain):
    alone = decode({topic: one_per_record(topic, events) for topic, events in stream.items()})
    enveloped = decode({topic: split(topic, events, cuts, plain) for topic, events in stream.items()})
    assert projected(enveloped) == projected(alone)
    assert enveloped.size == alone.size == sum(len(events) for events in stream.values())


def test_an_unreadable_event_is_dead_lettered_alone_and_its_envelope_neighbours_are_projected():
    good = [
        EnrichedEvent(message_id=f"m-{n}", type="track", anonymous_id="a", timestamp=T0, received_at=T0, source_id="web")
        .model_dump_json()
        .encode()
        for n in range(2)
    ]
    [envelope] = pack([good[0], b"not json", good[1]])
    batch = decode(
        {
            **{topic: [] for topic in (TOPICS.sessions.name, TOPICS.identities.name, TOPICS.persons.name)},
            TOPICS.enriched.name: [Record(TOPICS.enriched.name, 7, envelope.value, envelope.headers)],
        }
    )
    assert [row[0] for row in batch.rows[rows.EVENTS.name]] == ["m-0", "m-1"]
    assert [row[-2:] for row in batch.rows[rows.EVENTS.name]] == [[0, 7], [0, 7]]  # the envelope's position
    [bad] = [orjson.loads(row) for row in batch.bad_rows]
    assert (bad["payload"], bad["stage"], bad["problems"][0]["field"]) == ("not json", "projector", "message")
    assert batch.next_offsets == {(TOPICS.enriched.name, 0): 8}


def test_an_envelope_of_an_unknown_version_or_a_wrong_count_is_dead_lettered_whole():
    envelope = Envelope(b'{"a":1}\n{"b":2}', 2)
    unknown = Record(TOPICS.enriched.name, 0, envelope.value, [(VERSION_HEADER, b"9"), (COUNT_HEADER, b"2")])
    miscounted = Record(TOPICS.enriched.name, 1, envelope.value, [(VERSION_HEADER, b"1"), (COUNT_HEADER, b"3")])
    batch = decode(
        {TOPICS.enriched.name: [unknown, miscounted], TOPICS.sessions.name: [], TOPICS.identities.name: [], TOPICS.persons.name: []}
    )
    assert not batch.rows.get(rows.EVENTS.name)
    problems = [orjson.loads(row)["problems"][0] for row in batch.bad_rows]
    assert [p["field"] for p in problems] == ["envelope_version", "envelope_count"]
    assert [orjson.loads(row)["payload"] for row in batch.bad_rows] == [envelope.value.decode()] * 2
    assert batch.next_offsets == {(TOPICS.enriched.name, 0): 2}
