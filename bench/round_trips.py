"""Database round trips per batch: what one batch of imports costs in commands sent to the
server, counted by a PyMongo command listener around the real processor and store.

    python -m bench.round_trips [--commands N] [--mongodb-url URL]

The catalog is cached as a worker caches it (30 s). A batch of N creations (by email, with
message ids) is decided and completed first; then one batch of N updates (`incr` of the same
profiles, new message ids) is counted, from the start of `process` to the end of `complete`,
by command name. It uses only the store's and the processor's public API, so the same file
runs on an older checkout for a before/after figure (`cd <checkout> && python -m
bench.round_trips`).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from pymongo import AsyncMongoClient, monitoring

from tests.support import CATALOG, TOKEN
from worker.domain.envelope import Envelope
from worker.domain.imports.processor import ImportProcessor
from worker.settings import Settings
from worker.store.mongo import MongoStore


class Counted(monitoring.CommandListener):
    """Commands the client sent, by name, while counting."""

    def __init__(self) -> None:
        self.counting = False
        self.sent: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.counting:
            self.sent[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _import(n: int, data: dict[str, Any]) -> Envelope:
    body = {"account_id": 1, "db_id": 10, "token": TOKEN, "email": f"p{n}@example.com"}
    return Envelope(body=orjson.dumps({**body, "data": data}), message_id=uuid.uuid4().hex)


async def count(mongodb_url: str, commands: int) -> Counter[str]:
    counted = Counted()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, tz_aware=True, tzinfo=UTC, event_listeners=[counted]
    )
    database = f"bench_rt_{uuid.uuid4().hex[:8]}"
    store = MongoStore(client, database, catalog_cache_seconds=30.0)  # as the worker runs
    try:
        await store.ensure_indexes()
        await store.catalog.apply(CATALOG)
        fence = await store.fence("bench.round_trips.0")
        processor = ImportProcessor(store.ports(fence), lambda: datetime.now(UTC), 1 << 20)
        created = await processor.process([_import(n, {"age": 1}) for n in range(commands)])
        await processor.complete(created)
        counted.counting = True
        updated = await processor.process(
            [_import(n, {"age": {"action": "incr", "value": 1}}) for n in range(commands)]
        )
        await processor.complete(updated)
        counted.counting = False
        return counted.sent
    finally:
        await client.drop_database(database)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--mongodb-url", default=None)
    args = parser.parse_args()
    url = args.mongodb_url or Settings().mongodb_url
    sent = asyncio.run(count(url, args.commands))
    print(f"one batch of {args.commands} updates: {sum(sent.values())} round trips")
    for name, times in sent.most_common():
        print(f"  {name}: {times}")


if __name__ == "__main__":
    main()
