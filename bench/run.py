"""Throughput harness: raw broker, raw database, a naive baseline, then the worker end to end.

    python -m bench.run [--messages N] [--mongodb-url URL]

Raw broker (bench/raw_broker.py): consume + grouped ack + two confirmed publishes per command
(the answer and the event an import of this mix sends), no database, no domain.
Raw database: bulk upserts of profile-shaped documents in batches of the worker's size.
Naive baseline (bench/naive.py): the same mix consumed one message at a time (read, update or
insert, publish with an awaited confirm, ack), as a first unbatched consumer would.
Worker: N import commands (70 % new profiles, 30 % updates of them, half matched by email,
half by the unique custom field `loyalty_id`; all with message ids) already
queued; a worker process drains them; the rate counts from its first result to its last.
Prints each rate, the worker's ratio to the lower raw rate and to the naive baseline, and the
worker's peak RSS. `--mongodb-url` points every part, the worker process included
(`PW_MONGODB_URL`), at another MongoDB-wire server, e.g. MongoDB 7 (`PW_SERVICES=docker
scripts/services.sh start`); the default is the settings' URL (PW_MONGODB_URL/MONGODB_URL,
mongo-java-server as `scripts/services.sh start` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import uvloop
from pymongo import AsyncMongoClient, UpdateOne

from bench.mix import commands
from bench.naive import naive_rate
from bench.raw_broker import raw_broker
from tests.integration.conftest import delete_topology as delete_queues_and_exchanges
from worker.cli.common import load_catalog
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

BATCH = 256


async def raw_database(settings: Settings, count: int) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    collection = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]["profiles"]
    now = datetime.now(UTC)
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        await collection.bulk_write(
            [
                UpdateOne(
                    {"_id": f"bench{n}@example.com"},
                    {
                        "$set": {
                            "db_id": 10,
                            "account_id": 1,
                            "fields.city": "Bergen",
                            "fields.age": 30,
                            "updated_at": now,
                        }
                    },
                    upsert=True,
                )
                for n in range(first, min(first + BATCH, count))
            ],
            ordered=False,
        )
    rate = count / (time.perf_counter() - started)
    await client.drop_database(collection.database.name)
    await client.close()
    return rate


async def delete_topology(settings: Settings) -> None:
    """Remove the run's queues and exchanges, so repeated runs leave nothing behind."""
    async with await aio_pika.connect(settings.amqp_url) as connection:
        await delete_queues_and_exchanges(connection, settings)


async def profiled(pid: int) -> asyncio.subprocess.Process | None:
    """With PW_BENCH_PROFILE=FILE, py-spy samples the worker into collapsed stacks in FILE
    until the queue is drained (bench/RESULTS.md has the breakdown)."""
    target = os.environ.get("PW_BENCH_PROFILE")
    if not target:
        return None
    return await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--format",
        "raw",
        "--rate",
        "200",
        "-o",
        target,
        "--pid",
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
    )


async def drain_with_worker(
    settings: Settings,
    queue: str,
    result_queue: str,
    bodies: list[tuple[str | None, dict[str, Any]]],
) -> tuple[float, asyncio.subprocess.Process]:
    """Queue the commands, start one `profile-worker run` process and count its results.

    The rate counts from the first result to the last; every command must succeed. The
    process is left running (callers may measure it further) and returned.
    """
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    await declare(channel, settings)
    async with CommandClient(settings.amqp_url) as client:
        await client.send_many(queue, bodies, reply=False)
    env = {**os.environ, **settings.as_environment()}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", "run", env=env)
    sampler = await profiled(process.pid)
    results = await channel.get_queue(result_queue)
    received, errors, first_at = 0, 0, 0.0
    async with results.iterator() as stream:
        async for message in stream:
            await message.ack()
            received += 1
            errors += orjson.loads(message.body)["error"] != 0
            if received == 1:
                first_at = time.perf_counter()
            if received == len(bodies):
                break
    elapsed = time.perf_counter() - first_at
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        await sampler.wait()
    await connection.close()
    if errors:
        process.terminate()
        raise SystemExit(f"{errors} commands failed")
    return (len(bodies) - 1) / elapsed, process


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_us(ticks: int) -> float:
    """Clock ticks in microseconds."""
    return ticks * 1e6 / os.sysconf("SC_CLK_TCK")


async def worker_end_to_end(settings: Settings, count: int) -> tuple[float, float, float]:
    """The worker's rate, its peak RSS (MiB), and its CPU per command (µs, from /proc: start-up
    and the drain)."""
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(load_catalog(Path("examples/catalog.yaml")))
    rate, process = await drain_with_worker(
        settings, settings.import_queue, settings.import_result_queue, commands(count)
    )
    rss = peak_rss_mib(process.pid)
    cpu = cpu_us(cpu_ticks(process.pid)) / count
    process.terminate()
    await process.wait()
    await store.drop(settings.mongodb_database)
    await store.close()
    return rate, rss, cpu


def bench_settings(mongodb_url: str | None = None) -> Settings:
    """Settings with a database, queues and an events exchange of the run's own; `mongodb_url`,
    when given, replaces the settings' server (spawned workers get it as PW_MONGODB_URL)."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        mongodb_database=f"bench_{suffix}",
        import_queue=f"bench_import.{suffix}",
        import_result_queue=f"bench_import_result.{suffix}",
        relations_queue=f"bench_relations.{suffix}",
        relations_result_queue=f"bench_relations_result.{suffix}",
        relations_query_queue=f"bench_relations_query.{suffix}",
        events_exchange=f"bench_events.{suffix}",
        metrics_port=0,
        log_level="WARNING",
    )
    return settings.model_copy(update={"mongodb_url": mongodb_url}) if mongodb_url else settings


async def main(count: int, mongodb_url: str | None) -> None:
    settings = bench_settings(mongodb_url)
    broker = await raw_broker(settings.amqp_url, orjson.dumps(commands(1)[0][1]), count)
    database = await raw_database(settings, count)
    naive = await naive_rate(settings, settings.mongodb_url, count)
    worker, rss, cpu = await worker_end_to_end(settings, count)
    await delete_topology(settings)
    lower = min(broker, database)
    print(f"messages            {count}")
    print(f"mongodb             {settings.mongodb_url}")
    print(f"raw broker          {broker:8.0f} cmd/s  (consume, 2 confirmed publishes, grouped ack)")
    print(f"raw database        {database:8.0f} doc/s  (bulk upsert, batches of {BATCH})")
    print(f"naive baseline      {naive:8.0f} cmd/s  (one message at a time, confirm per message)")
    print(f"worker end to end   {worker:8.0f} cmd/s  ({worker / lower:.0%} of the lower raw rate)")
    print(f"worker / naive      {worker / naive:8.1f} x")
    print(f"worker CPU          {cpu:8.0f} µs/cmd  (utime + stime from /proc, start-up included)")
    print(f"worker peak RSS     {rss:8.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    arguments = parser.parse_args()
    uvloop.run(main(arguments.messages, arguments.mongodb_url))
