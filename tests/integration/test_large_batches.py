"""Batches with more writes than one database command may carry (see `worker.store.bulk`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.integration.conftest import TOKEN, StartWorker, command, new_id, seed_profile
from worker.runtime.client import CommandClient
from worker.settings import Settings

COUNT = 150


async def answers(client: CommandClient, count: int) -> Counter[int]:
    return Counter(reply["error"] for reply in await client.replies(count, timeout=120))


async def test_one_batch_updating_many_relations(
    client: CommandClient, settings: Settings, mongo: Any, start_worker: StartWorker
) -> None:
    a = await seed_profile(mongo, "a3a3a3a3a3a3a3a3a3a3a3a3", 10)
    partners = [await seed_profile(mongo, f"{n:024x}", 11) for n in range(1, COUNT + 1)]
    bodies = [
        {
            "action": "strengthen",
            "account_id": 1,
            "rel_id": 500,
            "profile_a": {"profile_id": a},
            "profile_b": {"profile_id": b},
            "weights": {"weight": 1},
            "token": TOKEN,
        }
        for b in partners
    ]
    _, stopping, first = await start_worker()
    await client.send_many(settings.relations_queue, ((new_id(), body) for body in bodies))
    assert await answers(client, COUNT) == {0: COUNT}
    stopping.set()
    await first

    # Queued while no worker runs, so the next worker takes them in one batch of updates.
    await client.send_many(settings.relations_queue, ((new_id(), body) for body in bodies))
    await start_worker()
    assert await answers(client, COUNT) == {0: COUNT}
    weights = [doc["props"]["weight"] for doc in await mongo.relations.find({}).to_list()]
    assert weights == [2] * COUNT


async def test_one_batch_updating_many_profiles(
    client: CommandClient, settings: Settings, mongo: Any, start_worker: StartWorker
) -> None:
    bodies = [command(f"many{n}@example.com", data={"age": 1}) for n in range(COUNT)]
    _, stopping, first = await start_worker()
    await client.send_many(settings.import_queue, ((new_id(), body) for body in bodies))
    assert await answers(client, COUNT) == {0: COUNT}
    stopping.set()
    await first

    increments = [{**body, "data": {"age": {"action": "incr", "value": 1}}} for body in bodies]
    await client.send_many(settings.import_queue, ((new_id(), body) for body in increments))
    await start_worker()
    assert await answers(client, COUNT) == {0: COUNT}
    ages = [doc["fields"]["age"] for doc in await mongo.profiles.find({}).to_list()]
    assert ages == [2] * COUNT
