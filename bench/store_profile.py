"""Where a batch's time goes: one processor batch with every store call timed.

    python -m bench.store_profile [--relations R] [--batch N]

Seeds R relations (by running R `strengthen` commands through the processor, untimed), then
times one batch of N `strengthen` commands on existing relations and prints the seconds spent
in each store method, with call counts. No broker: the processor is called directly.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.relations import DB_A, DB_B, seed_profiles, strengthen_commands
from worker.cli.common import load_catalog
from worker.domain.envelope import Answered, Envelope
from worker.domain.relations.processor import RelationProcessor
from worker.domain.shared.ports import Stores
from worker.settings import Settings
from worker.store.mongo import MongoStore


def timed(stores: Stores, spent: dict[str, list[float]]) -> None:
    """Wrap every port's public methods so each call adds its seconds to `spent`."""
    for port_name, port in vars(stores).items():
        for name in dir(port):
            method = getattr(port, name)
            if name.startswith("_") or not inspect.iscoroutinefunction(method):
                continue

            async def wrapper(
                *args: Any, _method: Any = method, _name: str = f"{port_name}.{name}", **kw: Any
            ) -> Any:
                started = time.perf_counter()
                try:
                    return await _method(*args, **kw)
                finally:
                    spent[_name].append(time.perf_counter() - started)

            setattr(port, name, wrapper)


def envelopes(bodies: list[tuple[str | None, dict[str, Any]]]) -> list[Envelope]:
    return [Envelope(body=orjson.dumps(body), message_id=mid) for mid, body in bodies]


async def main(relations: int, batch: int) -> None:
    settings = Settings(mongodb_database=f"bench_profile_{uuid.uuid4().hex[:8]}")
    store = MongoStore.from_settings(settings)
    await store.ensure_indexes()
    await store.catalog.apply(load_catalog(Path("examples/catalog.yaml")))
    a_ids = await seed_profiles(store, settings, 10, DB_A)
    b_ids = await seed_profiles(store, settings, max(1, relations // 10), DB_B)
    stores = store.ports()
    processor = RelationProcessor(stores, lambda: datetime.now(UTC), settings.max_message_bytes)
    seed = strengthen_commands(relations, a_ids, b_ids)
    for first in range(0, len(seed), 256):
        await processor.process(envelopes(seed[first : first + 256]))
    spent: dict[str, list[float]] = defaultdict(list)
    timed(stores, spent)
    work = envelopes(strengthen_commands(batch, a_ids, b_ids))
    started = time.perf_counter()
    outcomes = await processor.process(work)
    await processor.complete(outcomes)
    total = time.perf_counter() - started
    assert all(isinstance(o, Answered) and o.result.error == 0 for o in outcomes), outcomes[0]
    print(f"{batch} strengthen commands on {relations} existing relations: {total:.2f} s")
    for name, seconds in sorted(spent.items(), key=lambda item: -sum(item[1])):
        print(f"  {name:32} {sum(seconds):7.2f} s  {len(seconds):4} calls")
    print(f"  {'(outside the store)':32} {total - sum(map(sum, spent.values())):7.2f} s")
    await store.drop(settings.mongodb_database)
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--relations", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(main(args.relations, args.batch))
