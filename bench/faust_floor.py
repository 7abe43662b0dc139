"""The framework's floor: a faust worker (aiokafka `kafka://` transport) whose agent takes the same batches as
footfall's sessionizer and does nothing with them. What it costs is faust's own per-message work, which any
agent pays before it does anything; bench/processors.py reports it beside the bare loop.

    python -m bench.faust_floor TOPIC EXPECTED DONE_FILE   (KAFKA_BOOTSTRAP_SERVERS, FAUST_FLOOR_GROUP, FAUST_FLOOR_DATA_DIR)

Once it has taken EXPECTED events it writes time.monotonic() (one clock for every process here) to DONE_FILE:
faust commits only every few seconds, which would blur a run this short.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import faust

from schemas.config import FootfallSettings


def main() -> None:
    topic_name, expected, done_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    settings = FootfallSettings()
    app = faust.App(
        os.environ["FAUST_FLOOR_GROUP"],
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=os.environ["FAUST_FLOOR_DATA_DIR"],
    )
    source = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    @app.agent(source)
    async def take_and_drop(stream):
        taken = 0
        async for batch in stream.take_events(settings.processor_batch_max, within=settings.processor_batch_seconds):
            taken += len(batch)
            if taken >= expected and not done_file.exists():
                done_file.write_text(repr(time.monotonic()))

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
