"""Latency of a lone command on an idle worker: one import at a time, each awaited.

    python -m bench.latency [--commands N] [--mongodb-url URL]

A `profile-worker run` process serves the run's own queues; each command (the import mix of
`bench.mix`) is published with `reply_to` only after the previous answer came back, so the
worker is idle whenever one arrives. Prints p50, p99 and the maximum, in milliseconds, from
publish to answer as the producer sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import aio_pika

from bench.mix import commands
from bench.run import bench_settings, delete_topology
from worker.cli.common import load_catalog
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore


async def latencies(settings: Settings, count: int) -> list[float]:
    """Seconds from publish to answer of `count` commands sent one at a time."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        await declare(await connection.channel(), settings)
    env = {**os.environ, **settings.as_environment()}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", "run", env=env)
    spent: list[float] = []
    try:
        async with CommandClient(settings.amqp_url) as client:
            for message_id, body in commands(count + 10):
                started = time.perf_counter()
                await client.send(settings.import_queue, body, message_id=message_id)
                answer = await client.reply(timeout=30)
                spent.append(time.perf_counter() - started)
                assert answer["error"] == 0, answer
    finally:
        process.terminate()
        await process.wait()
    return spent[10:]  # the first ones warm the worker's caches and connections up


async def main(count: int, mongodb_url: str | None) -> None:
    settings = bench_settings(mongodb_url)
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(load_catalog(Path("examples/catalog.yaml")))
    spent = await latencies(settings, count)
    await delete_topology(settings)
    await store.drop(settings.mongodb_database)
    await store.close()
    cuts = statistics.quantiles([s * 1000 for s in spent], n=100)
    print(f"lone commands       {len(spent)}")
    print(f"mongodb             {settings.mongodb_url}")
    print(f"latency p50         {cuts[49]:8.1f} ms")
    print(f"latency p99         {cuts[98]:8.1f} ms")
    print(f"latency max         {max(spent) * 1000:8.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.commands, arguments.mongodb_url))
