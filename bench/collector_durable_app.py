"""The floor under the collector's durability promise: the null app plus one thing, each body written to Kafka
with the collector's own KafkaWriter (acks=all, idempotent) and answered only once Kafka has it. No parsing,
no validation. Its distance from the null app is what "200 means durable" costs before any other work.
A batch body (path ending in /batch) is split into one record per call, as the collector writes them: the
least a batch endpoint does (decode, re-encode each call, one Kafka message per event).

    uvicorn collector_durable_app:app        (KAFKA_BOOTSTRAP_SERVERS, BENCH_TOPIC)
"""

import os

import orjson

from ingest.kafka_writer import KafkaWriter, Record

BODY = b'{"success":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
TOPIC = os.environ.get("BENCH_TOPIC", "bench-durable")
WRITER: list[KafkaWriter] = []  # made at start-up: the writer needs the server's running event loop


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        WRITER.append(KafkaWriter(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
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
        records = [Record(TOPIC, None, orjson.dumps(call)) for call in orjson.loads(body)["batch"]]
    else:
        records = [Record(TOPIC, None, body)]
    await WRITER[0].write(records)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
