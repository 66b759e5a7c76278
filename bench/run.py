"""Throughput harness: raw broker, raw database, then the worker end to end, in one run.

    python -m bench.run [--messages N]

Raw broker: consume + ack (grouped) + confirmed result publish (pipelined), no database.
Raw database: bulk upserts of profile-shaped documents in batches of the worker's size.
Worker: N import commands (70 % new profiles, 30 % updates of them, half matched by email,
half by the unique custom field `loyalty_id`; all with message ids) already
queued; a worker process drains them; the rate counts from its first result to its last.
Prints each rate and the worker's ratio to the lower raw rate, and the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message
from pymongo import AsyncMongoClient, UpdateOne

from worker.cli import load_catalog
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare, routes
from worker.settings import Settings
from worker.store.mongo import MongoStore

BATCH = 256
TOKEN = "demo-crm-token-0123456789"


def commands(count: int) -> list[tuple[str | None, dict[str, Any]]]:
    """70 % creations, 30 % updates of already created profiles, spread through the stream;
    updates alternate between email and custom (`loyalty_id`) matching."""
    bodies: list[tuple[str | None, dict[str, Any]]] = []
    created = 0
    for n in range(count):
        update = n % 10 >= 7 and created > 0
        index = (n * 7919) % created if update else created
        created += 0 if update else 1
        body: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN}
        if not update:
            data = {
                "_fname": f"Name{index}",
                "city": "Bergen",
                "age": 30,
                "interests": "a, b",
                "loyalty_id": f"L{index}",
            }
            body.update(email=f"bench{index}@example.com", data=data)
        elif n % 2:
            data = {"age": {"action": "incr", "value": 1}, "city": "Oslo"}
            body.update(email=f"bench{index}@example.com", data=data)
        else:
            data = {"age": {"action": "incr", "value": 1}, "vip": True}
            body.update(
                matching="custom", field_name="loyalty_id", field_value=f"L{index}", data=data
            )
        bodies.append((uuid.uuid4().hex, body))
    return bodies


async def raw_broker(settings: Settings, count: int) -> float:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        source = await channel.declare_queue(f"bench.raw.{uuid.uuid4().hex[:8]}", auto_delete=True)
        sink = await channel.declare_queue(f"bench.sink.{uuid.uuid4().hex[:8]}", auto_delete=True)
        body = orjson.dumps(commands(1)[0][1])
        async with CommandClient(settings.amqp_url) as client:
            await client.send_many(source.name, ((None, body) for _ in range(count)), reply=False)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=settings.prefetch_count)
        queue = await consume.get_queue(source.name)
        pending: list[aio_pika.abc.AbstractIncomingMessage] = []
        seen = 0
        started = time.perf_counter()
        async with queue.iterator() as stream:
            async for message in stream:
                pending.append(message)
                if len(pending) < BATCH and seen + len(pending) < count:
                    continue
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(
                            Message(b'{"error":0}', delivery_mode=DeliveryMode.PERSISTENT),
                            routing_key=sink.name,
                        )
                        for _ in pending
                    )
                )
                await pending[-1].ack(multiple=True)
                seen += len(pending)
                pending.clear()
                if seen >= count:
                    break
        rate = count / (time.perf_counter() - started)
        await source.delete(if_unused=False, if_empty=False)
        await sink.delete(if_unused=False, if_empty=False)
        return rate


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
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for route in routes(settings):
            for name in route.queue_names(settings.retry_max_attempts):
                await channel.queue_delete(name)
        await channel.exchange_delete(settings.events_exchange)


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


async def worker_end_to_end(settings: Settings, count: int) -> tuple[float, float]:
    store = MongoStore.from_settings(settings)
    await store.apply_catalog(load_catalog(Path("examples/catalog.yaml")))
    rate, process = await drain_with_worker(
        settings, settings.import_queue, settings.import_result_queue, commands(count)
    )
    rss = peak_rss_mib(process.pid)
    process.terminate()
    await process.wait()
    await store.drop(settings.mongodb_database)
    await store.close()
    return rate, rss


def bench_settings() -> Settings:
    """Settings with a database, queues and an events exchange of the run's own."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
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


async def main(count: int) -> None:
    settings = bench_settings()
    broker = await raw_broker(settings, count)
    database = await raw_database(settings, count)
    worker, rss = await worker_end_to_end(settings, count)
    await delete_topology(settings)
    lower = min(broker, database)
    print(f"messages            {count}")
    print(f"raw broker          {broker:8.0f} msg/s  (consume + grouped ack + confirmed publish)")
    print(f"raw database        {database:8.0f} doc/s  (bulk upsert, batches of {BATCH})")
    print(f"worker end to end   {worker:8.0f} cmd/s  ({worker / lower:.0%} of the lower raw rate)")
    print(f"worker peak RSS     {rss:8.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().messages))
