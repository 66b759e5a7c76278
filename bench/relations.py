"""Relation workloads: `strengthen` throughput and `get_counter` latency, with raw baselines.

    python -m bench.relations [--commands N] [--a-profiles A] [--b-profiles B] [--queries Q]
                              [--mongodb-url URL]

Profiles are seeded straight into the database: A profiles in the stores database (A side of
relation type 1 in examples/catalog.yaml), B profiles in the customers database. Then:
- raw broker: consume, two confirmed publishes per command, grouped ack, no database (as bench.run);
- raw database: bulk `$set` updates by `_id` of AxB relation-shaped documents;
- worker: N `strengthen` commands (with message ids) spread over the AxB relations, drained
  by one `profile-worker run` process; the rate counts from its first result to its last;
- queries: Q `get_counter` RPCs, one at a time, round robin over the A profiles (each has B
  relations), latency p50/p99; and the same store reads without the broker, for comparison.
`--mongodb-url` runs all of it, the worker process included, on another MongoDB-wire server
(as in bench.run); the default is the settings' URL.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop
from bson import ObjectId
from pymongo import AsyncMongoClient, UpdateOne

from bench.mix import TOKEN
from bench.raw_broker import raw_broker
from bench.run import (
    BATCH,
    bench_settings,
    delete_topology,
    drain_with_worker,
    peak_rss_mib,
)
from worker.cli.common import load_catalog
from worker.domain.shared.ports import RelationFilter
from worker.runtime.client import CommandClient
from worker.settings import Settings
from worker.store.mongo import MongoStore

REL_ID, DB_A, DB_B = 1, 11, 10


async def seed_profiles(store: MongoStore, settings: Settings, count: int, db_id: int) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    ids = [ObjectId() for _ in range(count)]
    profiles = client[settings.mongodb_database]["profiles"]
    for first in range(0, count, 1000):
        await profiles.insert_many(
            [
                {"_id": pid, "db_id": db_id, "account_id": 1, "fields": {}, "_v": 1}
                for pid in ids[first : first + 1000]
            ]
        )
    await client.close()
    return [str(pid) for pid in ids]


def strengthen_commands(
    count: int, a_ids: list[str], b_ids: list[str]
) -> list[tuple[str | None, dict[str, Any]]]:
    """Command n strengthens relation (a[n % A], b[(n // A) % B]): every relation gets
    count / (AxB) commands, and a batch touches distinct relations."""
    bodies: list[tuple[str | None, dict[str, Any]]] = []
    for n in range(count):
        a = a_ids[n % len(a_ids)]
        b = b_ids[(n // len(a_ids)) % len(b_ids)]
        body = {
            "action": "strengthen",
            "account_id": 1,
            "rel_id": REL_ID,
            "profile_a": {"profile_id": a},
            "profile_b": {"profile_id": b},
            "weights": {"visits": 1 + n % 3, "favourite": n % 2 == 0},
            "token": TOKEN,
        }
        bodies.append((uuid.uuid4().hex, body))
    return bodies


def relation_document(n: int, now: datetime) -> dict[str, Any]:
    """A document shaped like the worker's relations (without its applied-command markers)."""
    a, b = f"{n:024x}", f"{n + 1:024x}"
    return {
        "_id": n,
        "key": f"{REL_ID}:{a}:{b}",
        "rel_id": REL_ID,
        "account_id": 1,
        "db_a": DB_A,
        "db_b": DB_B,
        "profile_id_a": a,
        "profile_id_b": b,
        "props": {"visits": 0, "favourite": True},
        "relation_to_a": None,
        "relation_to_b": None,
        "priority": 50,
        "_v": 1,
        "created_at": now,
        "updated_at": now,
    }


async def raw_database(settings: Settings, relations: int, count: int) -> float:
    """Bulk `$set` updates by `_id` over `relations` relation-shaped documents, one unordered
    bulk per batch as the worker sends them."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    collection = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]["relations"]
    now = datetime.now(UTC)
    for first in range(0, relations, 1000):
        await collection.insert_many(
            [relation_document(n, now) for n in range(first, min(first + 1000, relations))]
        )
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        await collection.bulk_write(
            [
                UpdateOne(
                    {"_id": n % relations},
                    {"$set": {"props.visits": n, "updated_at": now}, "$inc": {"_v": 1}},
                )
                for n in range(first, min(first + BATCH, count))
            ],
            ordered=False,
        )
    rate = count / (time.perf_counter() - started)
    await client.drop_database(collection.database.name)
    await client.close()
    return rate


async def query_latencies(settings: Settings, a_ids: list[str], count: int) -> list[float]:
    latencies = []
    async with CommandClient(settings.amqp_url) as client:
        for n in range(count):
            body = {
                "method": "get_counter",
                "account_id": 1,
                "rel_id": REL_ID,
                "profile_id": a_ids[n % len(a_ids)],
                "token": TOKEN,
            }
            started = time.perf_counter()
            await client.send(settings.relations_query_queue, body)
            answer = await client.reply(timeout=60)
            latencies.append(time.perf_counter() - started)
            if answer["error"] != 0:
                raise SystemExit(f"query failed: {answer}")
    return latencies


async def store_latencies(store: MongoStore, a_ids: list[str], count: int) -> list[float]:
    """The database reads of one get_counter, timed without the broker or the worker."""
    latencies = []
    for n in range(count):
        where = RelationFilter(1, rel_id=REL_ID, profile_id_a=a_ids[n % len(a_ids)])
        started = time.perf_counter()
        await store.relations.count_relations(where)
        for name in ("visits", "favourite"):
            await store.relations.count_relations(replace(where, having=name))
        await store.relations.property_sum(replace(where, having="visits"), "visits")
        await store.relations.top_relations(replace(where, having="visits"), "visits", 10)
        latencies.append(time.perf_counter() - started)
    return latencies


def progress(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main(
    commands: int, a_count: int, b_count: int, queries: int, mongodb_url: str | None
) -> None:
    settings = bench_settings(mongodb_url)
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(load_catalog(Path("examples/catalog.yaml")))
    a_ids = await seed_profiles(store, settings, a_count, DB_A)
    b_ids = await seed_profiles(store, settings, b_count, DB_B)
    relations = a_count * b_count
    sample = orjson.dumps(strengthen_commands(1, a_ids, b_ids)[0][1])
    broker = await raw_broker(settings.amqp_url, sample, min(commands, 20_000))
    progress(f"raw broker {broker:.0f} cmd/s")
    database = await raw_database(settings, relations, commands)
    progress(f"raw database {database:.0f} doc/s")
    rate, process = await drain_with_worker(
        settings,
        settings.relations_queue,
        settings.relations_result_queue,
        strengthen_commands(commands, a_ids, b_ids),
    )
    progress(f"worker {rate:.0f} cmd/s")
    try:
        rpc = await query_latencies(settings, a_ids, queries)
        progress("queries done")
        raw = await store_latencies(store, a_ids, min(queries, 200))
        rss = peak_rss_mib(process.pid)
    finally:
        process.terminate()
        await process.wait()
    lower = min(broker, database)
    print(f"strengthen commands {commands} over {relations} relations ({a_count} A x {b_count} B)")
    print(f"raw broker          {broker:8.0f} cmd/s  (2 confirmed publishes per command)")
    print(f"raw database        {database:8.0f} doc/s  (bulk $set by _id, batches of {BATCH})")
    print(f"worker strengthen   {rate:8.0f} cmd/s  ({rate / lower:.0%} of the lower raw rate)")
    print(f"get_counter         {queries} queries over {b_count} relations each, one at a time")
    print(
        f"  through the worker  p50 {percentile(rpc, 0.5) * 1000:7.1f} ms"
        f"  p99 {percentile(rpc, 0.99) * 1000:7.1f} ms"
    )
    print(
        f"  store reads alone   p50 {percentile(raw, 0.5) * 1000:7.1f} ms"
        f"  p99 {percentile(raw, 0.99) * 1000:7.1f} ms"
    )
    print(f"worker peak RSS     {rss:8.1f} MiB")
    await store.drop(settings.mongodb_database)
    await store.close()
    await delete_topology(settings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--a-profiles", type=int, default=10)
    parser.add_argument("--b-profiles", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    args = parser.parse_args()
    uvloop.run(
        main(args.commands, args.a_profiles, args.b_profiles, args.queries, args.mongodb_url)
    )
