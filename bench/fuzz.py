"""Wire fuzzing by hand, at volume: `python -m bench.fuzz --count 10000` sends that many
generated hostile bodies (tests/fuzz/bodies.py) to each command queue of a `python -m worker run`
process and reports, per queue and family, how many were answered, dead-lettered, 4xx or other;
then checks that nothing was written and that the worker still answers a valid command.

Needs the services (`scripts/services.sh start`); `--mongodb-url` picks another database server
than the services' MONGODB_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pymongo import AsyncMongoClient

from bench.run import peak_rss_mib
from tests.fuzz import bodies
from tests.integration.conftest import (
    CATALOG,
    TOKEN,
    command,
    delete_topology,
    isolated_settings,
    worker_environment,
)
from tests.integration.services import service_urls
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore


def fuzz_settings(amqp_url: str, mongodb_url: str) -> Settings:
    return isolated_settings(amqp_url, mongodb_url, "fuzz")


class Tally:
    def __init__(self) -> None:
        self.answers: dict[str | None, int] = {}
        self.dead: set[str | None] = set()
        self.arrived = asyncio.Event()

    async def on_dead(self, message: AbstractIncomingMessage) -> None:
        self.dead.add(message.correlation_id)

    async def collect(self, client: CommandClient, ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.answers.keys() | self.dead and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                reply = await client.reply(timeout=1.0)
                self.answers[reply.correlation_id] = int(reply["error"])


def report(sent: dict[str, tuple[str, bodies.Case]], tally: Tally) -> int:
    """Print the figures; the number of bodies not refused as the contract says."""
    rows: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for cid, (kind, case) in sent.items():
        row = rows[kind, case.family]
        code = tally.answers.get(cid)
        row["sent"] += 1
        row["bytes"] += len(case.body)
        row["answered"] += code is not None
        row["dead"] += cid in tally.dead
        row["4xx"] += code is not None and 400 <= code < 500
        row["other"] += code is not None and not 400 <= code < 500
        row["lost"] += code is None and cid not in tally.dead
    print(f"{'queue/family':48} {'sent':>6} {'MiB':>6} {'answ':>6} {'dead':>6} {'4xx':>6} "
          f"{'other':>5} {'lost':>4}")  # fmt: skip
    total: Counter[str] = Counter()
    for (kind, family), row in sorted(rows.items()):
        total.update(row)
        print(f"{kind + '/' + family:48} {row['sent']:6} {row['bytes'] / 2**20:6.1f} "
              f"{row['answered']:6} {row['dead']:6} {row['4xx']:6} {row['other']:5} "
              f"{row['lost']:4}")  # fmt: skip
    print(f"{'total':48} {total['sent']:6} {total['bytes'] / 2**20:6.1f} {total['answered']:6} "
          f"{total['dead']:6} {total['4xx']:6} {total['other']:5} {total['lost']:4}")  # fmt: skip
    codes = Counter(tally.answers.get(cid) for cid in sent)
    print("answer codes:", dict(sorted(codes.items(), key=lambda item: str(item[0]))))
    return total["other"] + total["lost"]


async def still_answers(client: CommandClient, settings: Settings, tally: Tally) -> bool:
    probes = {
        await client.send(settings.import_queue, command("after@example.com")): 0,
        await client.send(
            settings.relations_query_queue,
            {"method": "single", "account_id": 1, "relation_id": 1, "token": TOKEN},
        ): 404,
    }
    await tally.collect(client, set(probes), timeout=60)
    got = {cid: tally.answers.get(cid) for cid in probes}
    print("valid commands afterwards:", list(got.values()), "expected", list(probes.values()))
    return got == probes


async def main(count: int, seed: int, mongodb_url: str | None, int64_edges: bool) -> int:
    with service_urls() as urls:
        settings = fuzz_settings(urls.amqp_url, mongodb_url or urls.mongodb_url)
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    await declare(channel, settings)
    env = worker_environment(settings)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", "run", env=env)
    queues = {
        "database_import": settings.import_queue,
        "relations": settings.relations_queue,
        "relations_query": settings.relations_query_queue,
    }
    tally = Tally()
    failures = 0
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    try:
        for queue in queues.values():
            dead = await channel.get_queue(f"{queue}.dead")
            await dead.consume(tally.on_dead, no_ack=True)
        async with CommandClient(settings.amqp_url) as client:
            started = time.perf_counter()
            sent: dict[str, tuple[str, bodies.Case]] = {}
            with bodies.raw_short_strings():
                for kind, queue in queues.items():
                    cases = bodies.generate(kind, count, seed, TOKEN, int64_edges)
                    published = await bodies.publish_all(
                        client.channel, queue, cases, client.reply_queue
                    )
                    sent.update({cid: (kind, case) for cid, case in published.items()})
                    print(f"published {len(published)} to {kind}", flush=True)
                await tally.collect(client, set(sent), timeout=120 + 0.05 * len(sent))
            elapsed = time.perf_counter() - started
            failures += report(sent, tally)
            print(f"elapsed {elapsed:.1f} s ({len(sent) / elapsed:.0f} bodies/s)")
            database = mongo[settings.mongodb_database]
            written = {
                name: await database[name].count_documents({}) for name in ("profiles", "relations")
            }
            print("documents written:", written)
            failures += sum(written.values())
            failures += not await still_answers(client, settings, tally)
            print(f"worker peak RSS (VmHWM) {peak_rss_mib(process.pid):.0f} MiB; "
                  f"alive: {process.returncode is None}")  # fmt: skip
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        await delete_topology(connection, settings)
        await connection.close()
        await mongo.close()
        await store.drop(settings.mongodb_database)
        await store.close()
    return failures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="bodies per queue")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--mongodb-url", default=None)
    parser.add_argument(
        "--int64-edges",
        action="store_true",
        help="also 19-digit integers just outside int64 (a known finding)",
    )
    args = parser.parse_args()
    failures = asyncio.run(main(args.count, args.seed, args.mongodb_url, args.int64_edges))
    print("OK" if failures == 0 else f"FAILED: {failures}")
    raise SystemExit(1 if failures else 0)
