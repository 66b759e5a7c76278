"""Publishing rate of `profile-worker backfill`, next to a raw aiormq baseline in the same run.

    python -m bench.backfill [--lines N] [--rounds R] [--window W]

A JSON-lines file of N flat-form imports (an `incr` each, as a backfill of counters sends) is
backfilled to a queue of the run's own with no worker: the rate counts from the first byte
read (the content digest included) to the last confirm. The baseline publishes the same
bodies, already serialized, with the same properties, on aiormq with the same pipelining (W
unconfirmed at most, in chunks of W/4): the ceiling of one client process on this machine.
The two alternate R times (the machine is shared: differences under ~25 % are noise); the
queue is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

import aiormq
import orjson
import uvloop
from pamqp.commands import Basic

from worker.backfill.identity import content_of, identity_of, message_id
from worker.backfill.job import Job, run
from worker.backfill.kinds import kind_of
from worker.backfill.publishing import DEPTH
from worker.backfill.source import Format, Shaping
from worker.settings import Settings


class Quiet:
    """An observer that shows nothing."""

    def started(self, lines: int, after: int) -> None: ...
    def published(self, line: int, errors: int) -> None: ...
    def answered(self, done: int, expected: int, errors: int) -> None: ...


def write_file(path: Path, lines: int) -> list[bytes]:
    bodies = [
        orjson.dumps(
            {
                "email": f"backfill{n}@example.com",
                "_fname": "Bench",
                "city": "Bergen",
                "score": {"action": "incr", "value": 1},
            }
        )
        for n in range(lines)
    ]
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return bodies


async def backfill_rate(settings: Settings, path: Path, window: int) -> float:
    started = time.perf_counter()
    content = content_of(path)
    shaping = Shaping(defaults={"account_id": 1, "db_id": 10}, token="bench-token-0123456789")
    job = Job(
        file=path,
        source_format=Format.jsonl,
        shaping=shaping,
        kind=kind_of(settings.import_queue, settings),
        content=content,
        identity=identity_of(content, shaping.fingerprint(), None),
        checkpoint=path.with_name(path.name + ".checkpoint"),
        errors=path.with_name(path.name + ".errors"),
        window=window,
    )
    outcome = await run(job, settings.amqp_url, Quiet())
    assert outcome.published == content.lines, outcome
    return outcome.published / (time.perf_counter() - started)


async def raw_rate(settings: Settings, bodies: list[bytes], window: int) -> float:
    connection = await aiormq.connect(settings.amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    identity = uuid.uuid4().hex

    async def one(line: int, body: bytes) -> object:
        own = message_id(identity, line)
        properties = Basic.Properties(
            content_type="application/json", delivery_mode=2, message_id=own, correlation_id=own
        )
        return await channel.basic_publish(
            body, routing_key=settings.import_queue, properties=properties, mandatory=True
        )

    chunk_size = max(1, window // DEPTH)
    in_flight: deque[asyncio.Future[list[object]]] = deque()
    started = time.perf_counter()
    for first in range(0, len(bodies), chunk_size):
        chunk = bodies[first : first + chunk_size]
        in_flight.append(asyncio.gather(*(one(first + n + 1, b) for n, b in enumerate(chunk))))
        if len(in_flight) >= DEPTH:
            await in_flight.popleft()
    for confirms in in_flight:
        await confirms
    rate = len(bodies) / (time.perf_counter() - started)
    await connection.close()
    return rate


async def main(lines: int, rounds: int, window: int) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(import_queue=f"bench_backfill.{suffix}", metrics_port=0)
    connection = await aiormq.connect(settings.amqp_url)
    admin = await connection.channel()
    await admin.queue_declare(settings.import_queue, durable=True)
    raw, backfill = [], []
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "bench.jsonl"
            bodies = write_file(path, lines)
            for _ in range(rounds):
                raw.append(await raw_rate(settings, bodies, window))
                await admin.queue_purge(settings.import_queue)
                backfill.append(await backfill_rate(settings, path, window))
                await admin.queue_purge(settings.import_queue)
    finally:
        await admin.queue_delete(settings.import_queue)
        await connection.close()
    print(f"{lines:,} lines, window {window}, {rounds} rounds (each figure: one round)")
    print("raw aiormq, pipelined confirms: " + ", ".join(f"{r:,.0f}" for r in raw) + " lines/s")
    print(
        "backfill, file to last confirm: " + ", ".join(f"{r:,.0f}" for r in backfill) + " lines/s"
    )
    ratio = statistics.median(backfill) / statistics.median(raw)
    print(f"median backfill / median raw: {ratio:.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=2_000)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.lines, arguments.rounds, arguments.window))
