"""The outbound stream's costs: deciding a batch's profile changes, and delivering them to a webhook.

    make bench-webhooks        (or: .venv/bin/python -m bench.webhooks [--persons 20000] [--changes 2000])

In one run, one broker, on this machine:
  decide     the projector's fold of a batch (each person's commands applied: the work it does anyway) is the
             baseline; the same fold plus `profile_diff.changes_of` (what publishing adds) is compared with it: the
             worst case, every person with five changes; and the common case, a batch that changes no property
             (page views moving last_seen), per person
  deliver    `--changes` changes pre-produced to profile-changes, one webhook at a local uvicorn receiver: changes/s
             from the first delivery to the last recorded attempt; the baseline is the same bodies POSTed
             straight with httpx at the same concurrency (no Kafka, no signature, no records)
Writes bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import uvicorn
from confluent_kafka import Producer
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from bench.common import broker, free_port, write_result
from footfall.topics import ensure_topics
from outbound.webhooks import Dispatcher
from projections.profile_diff import Transition, changes_of, sources_of
from projections.profiles import EMPTY, apply_command
from schemas.config import FootfallSettings
from schemas.profile_changes import ProfileChange, change_id_of
from schemas.stages import DEFAULT_STAGES, rank_of
from schemas.user_commands import UserCommand
from schemas.webhooks import WebhookDefinition

AT = datetime(2026, 11, 30, tzinfo=UTC)


def batch(persons: int) -> list[list[UserCommand]]:
    """Two commands per person, as a batch of API writes would bring: properties, a tag, a stage, a list."""
    made = []
    for n in range(persons):
        person = f"p{n}"
        made.append(
            [
                UserCommand(kind="create", command_id=f"c{n}a", person_id=person, at=AT, set={"email": f"u{n}@x.io", "plan": "free"}),
                UserCommand(
                    kind="update", command_id=f"c{n}b", person_id=person, at=AT + timedelta(seconds=1), set={"plan": "pro"},
                    tags_add=["vip"], stage="lead", stage_by="api", lists_add=["beta"], lists_by="api",
                ),
            ]
        )  # fmt: skip
    return made


def decide(persons: int, rounds: int = 3) -> dict:
    commands = batch(persons)
    rank = rank_of(sorted(DEFAULT_STAGES.values(), key=lambda s: s.order))
    sources = sources_of([], [c for pair in commands for c in pair])
    fold_s, total_s, published = [], [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        states = []
        for pair in commands:
            state = EMPTY
            for command in pair:
                state = apply_command(state, command)
            states.append((pair[0].person_id, state))
        folded = time.perf_counter()
        changes = changes_of([Transition(person, EMPTY, state) for person, state in states], sources, rank)
        done = time.perf_counter()
        fold_s.append(folded - started)
        total_s.append(done - started)
        published = len(changes)
    fold, total = min(fold_s), min(total_s)
    # The common case: a batch of page views that only moves last_seen (a new state, the same properties).
    moved = [Transition(person, state, replace(state, last_seen=(state.last_seen or 0) + 1)) for person, state in states]
    started = time.perf_counter()
    assert changes_of(moved, sources, rank) == []
    unchanged = time.perf_counter() - started
    return {
        "persons": persons,
        "changes": published,
        "fold_ms": round(fold * 1000, 1),
        "fold_and_decide_ms": round(total * 1000, 1),
        "decide_us_per_person": round((total - fold) / persons * 1e6, 1),
        "ratio_to_fold": round(total / fold, 2),
        "unchanged_us_per_person": round(unchanged / persons * 1e6, 2),
    }


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0

        async def receive(request) -> Response:
            await request.body()
            self.count += 1
            return Response(status_code=204)

        app = Starlette(routes=[Route("/hook", receive, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.05)


def changes(count: int) -> list[ProfileChange]:
    return [
        ProfileChange(change_id=change_id_of("bench", n), person_id=f"p{n % 500}", kind="tag_added", at=AT, source="api", subject="vip")
        for n in range(count)
    ]


async def plain_posts(url: str, bodies: list[bytes], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient() as client:

        async def post(body: bytes) -> None:
            async with limit:
                await client.post(url, content=body, headers={"Content-Type": "application/json"})

        started = time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        return len(bodies) / (time.perf_counter() - started)


def deliver(bootstrap: str, count: int) -> dict:
    settings = FootfallSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench-hooks-{uuid.uuid4().hex[:6]}", partitions=4)
    ensure_topics(bootstrap, settings.topics.all())
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    items = changes(count)
    baseline = asyncio.run(plain_posts(url, [c.model_dump_json().encode() for c in items], settings.webhook_concurrency))
    receiver.count = 0
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    hook = WebhookDefinition(id="bench", url=url, secret="x" * 32, kinds=["tag_added"], created_at=AT, updated_at=AT)
    producer.produce(settings.topics.webhooks.name, hook.model_dump_json().encode(), hook.id)
    for change in items:
        producer.produce(settings.topics.profile_changes.name, change.model_dump_json().encode(), change.person_id)
    producer.flush(30)
    dispatcher = Dispatcher(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(dispatcher.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while receiver.count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    while receiver.count < count and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    loop.call_soon_threadsafe(dispatcher.stop)
    thread.join(30)
    receiver.server.should_exit = True
    rate = receiver.count / elapsed if elapsed else 0.0
    return {
        "changes": count,
        "delivered": receiver.count,
        "concurrency": settings.webhook_concurrency,
        "dispatcher_per_s": round(rate),
        "plain_httpx_per_s": round(baseline),
        "ratio_to_plain_httpx": round(rate / baseline, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--changes", type=int, default=2_000)
    args = parser.parse_args()
    decided = decide(args.persons)
    print(f"decide: {decided}")
    with broker() as bootstrap:
        delivered = deliver(bootstrap, args.changes)
    print(f"deliver: {delivered}")
    print(f"wrote {write_result('webhooks', {'command': 'make bench-webhooks', 'decide': decided, 'deliver': delivered})}")


if __name__ == "__main__":
    main()
