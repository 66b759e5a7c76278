"""Batches with more writes than one database command may carry (see `worker.store.bulk`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.integration.conftest import TOKEN, StartWorker, command, new_id, seed_profile
from tests.support import LIVE
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
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


async def test_commands_on_one_relation_apply_in_queue_order_inside_a_batch(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    broker: Any,
    start_worker: StartWorker,
) -> None:
    a = await seed_profile(mongo, "a4a4a4a4a4a4a4a4a4a4a4a4", 10)
    b = await seed_profile(mongo, "b4b4b4b4b4b4b4b4b4b4b4b4", 11, phones=["+4711111111"])
    base = {
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "token": TOKEN,
    }
    by_id = {**base, "profile_b": {"profile_id": b}}
    # The same relation under another order key: B found by phone, not by id.
    by_keys = {**base, "profile_b": {"matching": "phone", "phone": "+47 111 11 111"}}
    steps = [
        {**by_id, "action": "attach", "weights": {"weight": 1}},
        {**by_keys, "action": "strengthen", "weights": {"weight": 2}},
        {**by_id, "action": "edit", "weights": {"weight": 10}},
        {**by_keys, "action": "strengthen", "weights": {"weight": -3}},
        {**by_id, "action": "detach"},
        {**by_keys, "action": "strengthen", "weights": {"weight": 5}},
    ]
    # Queued while no worker runs, so one batch holds them all.
    await declare(broker, settings)
    correlations = [await client.send(settings.relations_queue, step) for step in steps]
    await start_worker()
    replies = {reply.correlation_id: reply for reply in await client.replies(len(steps))}
    results = [replies[correlation] for correlation in correlations]

    assert [r["error"] for r in results] == [0] * len(steps)
    assert [r["props"]["weight"] for r in results] == [1, 3, 10, 7, 7, 5]
    assert [r["created"] for r in results] == [True, False, False, False, False, True]
    assert results[5]["relation_id"] != results[0]["relation_id"]
    doc = await mongo.relations.find_one(LIVE)
    assert (doc["_id"], doc["props"]) == (results[5]["relation_id"], {"weight": 5})
