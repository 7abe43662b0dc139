"""The floor under the collector's durability promise: the null app plus one thing, each body written to Kafka
with the collector's own KafkaWriter (acks=all, idempotent; events in the flush window's envelopes, as the
collector writes them) and answered only once Kafka has it. No parsing, no validation. Its distance from the null
app is what "200 means durable" costs before any other work. A single body is one event, keyed by a counter (the
collector keys by device). A batch body (path ending in /batch) is split into one event per call, keyed by its
anonymousId: the least a batch endpoint does (decode, re-encode each call).

    uvicorn collector_durable_app:app        (KAFKA_BOOTSTRAP_SERVERS, BENCH_TOPIC)
"""

import itertools
import os

import orjson

from ingest.kafka_writer import EnvelopeWindow, Event, KafkaWriter
from schemas.config import FootfallSettings

BODY = b'{"success":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
TOPIC = os.environ.get("BENCH_TOPIC", "bench-durable")
WRITER: list[KafkaWriter] = []  # made at start-up: the writer needs the server's running event loop
KEYS = itertools.cycle([str(n).encode() for n in range(10_000)])  # as many as the benchmark's single bodies


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        settings = FootfallSettings()  # the flush window and envelope limits, as the collector reads them
        window = EnvelopeWindow(TOPIC, settings.collector_flush_seconds, settings.envelope_limits)
        WRITER.append(KafkaWriter(os.environ["KAFKA_BOOTSTRAP_SERVERS"], window))
        await WRITER[0].broker_reachable()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        WRITER.pop().close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks, more_body = [], True
    while more_body:
        message = await receive()
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    if scope["path"].endswith("/batch"):
        events = [Event(call["anonymousId"].encode(), orjson.dumps(call)) for call in orjson.loads(body)["batch"]]
    else:
        events = [Event(next(KEYS), body.strip())]
    await WRITER[0].write(events=events)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
