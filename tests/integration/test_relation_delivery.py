"""Exactly-once `strengthen` (SPEC §9): redelivery, crashes, and two racing processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import (
    TOKEN,
    EventTap,
    StartWorker,
    ask_relation,
    new_id,
    new_profile,
    seed_profile,
)
from tests.integration.crashing import CrashingStore
from tests.integration.test_concurrency import answers_from_two_workers
from tests.support import LIVE
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore


def strengthen(a: str, b: str, weight: int = 1) -> dict[str, Any]:
    return {
        "action": "strengthen",
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "weights": {"weight": weight},
        "token": TOKEN,
    }


async def profiles(client: CommandClient, settings: Settings) -> tuple[str, str]:
    a = await new_profile(client, settings, "a@example.com")
    b = await new_profile(client, settings, "b@example.com", db_id=11)
    return a, b


async def test_a_redelivered_strengthen_is_applied_once(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap
) -> None:
    a, b = await profiles(client, settings)
    await ask_relation(client, settings, strengthen(a, b, 2))
    message_id = new_id()
    first = await ask_relation(client, settings, strengthen(a, b, 5), message_id=message_id)
    second = await ask_relation(client, settings, strengthen(a, b, 5), message_id=message_id)

    assert first["props"] == {"weight": 7}
    assert second == first, "the stored result is answered again"
    assert (await mongo.relations.find_one({}))["props"]["weight"] == 7
    changed = [e for e in events.drained() if e["_routing_key"] == "relation.changed"]
    assert len(changed) == 1, "the redelivery emitted no event"


async def crash_during(
    client: CommandClient,
    settings: Settings,
    start_worker: StartWorker,
    write_first: bool,
    setup: dict[str, Any],
    doomed_command: dict[str, Any],
) -> tuple[dict[str, Any], CrashingStore]:
    """Run `setup` on a worker, then kill it just before or after `doomed_command`'s write.

    Returns the set-up's result and the crashing store (to close once the test is done).
    """
    crashing = CrashingStore.around(settings, "relations", write_first=write_first)
    _, _, doomed = await start_worker(with_store=crashing)
    done = await ask_relation(client, settings, setup)
    crashing.trap.armed = True
    await client.send(settings.relations_queue, doomed_command, message_id=new_id())
    await asyncio.wait_for(crashing.trap.reached.wait(), 20)
    doomed.cancel()  # its connection drops without an ack: the broker requeues the command
    with pytest.raises(asyncio.CancelledError):
        await doomed
    return done, crashing


@pytest.mark.parametrize("write_first", [True, False], ids=["after write", "before write"])
async def test_worker_killed_around_the_write_strengthens_once(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    start_worker: StartWorker,
    write_first: bool,
) -> None:
    a = await seed_profile(mongo, "a1a1a1a1a1a1a1a1a1a1a1a1", 10)
    b = await seed_profile(mongo, "b1b1b1b1b1b1b1b1b1b1b1b1", 11)
    attached, crashing = await crash_during(
        client, settings, start_worker, write_first, strengthen(a, b, 1), strengthen(a, b, 10)
    )
    expected_now = 11 if write_first else 1
    assert (await mongo.relations.find_one({}))["props"]["weight"] == expected_now

    await start_worker()
    result = await client.reply(timeout=30)
    assert (result["error"], result["relation_id"]) == (0, attached["relation_id"])
    assert result["props"] == {"weight": 11}
    assert (await mongo.relations.find_one({}))["props"]["weight"] == 11, "applied exactly once"
    await crashing.close()


async def test_two_processes_strengthening_one_relation_sum_exactly(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, broker: Any
) -> None:
    await declare(broker, settings)
    a = await seed_profile(mongo, "a0a0a0a0a0a0a0a0a0a0a0a0", 10)
    b = await seed_profile(mongo, "b0b0b0b0b0b0b0b0b0b0b0b0", 11)
    other = await seed_profile(mongo, "c0c0c0c0c0c0c0c0c0c0c0c0", 11)
    bodies = [
        (new_id(), strengthen(a, b if n % 2 else other, weight=n % 5 + 1)) for n in range(120)
    ]
    await client.send_many(settings.relations_queue, bodies)
    replies = await answers_from_two_workers(client, settings, len(bodies), batch_max_size=8)

    assert Counter(reply["error"] for reply in replies) == {0: len(bodies)}
    assert sum(1 for reply in replies if reply["created"]) == 2, "one relation per pair"
    docs = {doc["profile_id_b"]: doc for doc in await mongo.relations.find({}).to_list()}
    expected_b = sum(n % 5 + 1 for n in range(120) if n % 2)
    expected_other = sum(n % 5 + 1 for n in range(120) if not n % 2)
    assert docs[b]["props"]["weight"] == expected_b
    assert docs[other]["props"]["weight"] == expected_other
    assert len({reply["relation_id"] for reply in replies}) == 2


async def test_two_processes_creating_relations_never_share_an_id(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, broker: Any
) -> None:
    await declare(broker, settings)
    a = await seed_profile(mongo, "a2a2a2a2a2a2a2a2a2a2a2a2", 10)
    partners = [await seed_profile(mongo, f"{n:024x}", 11) for n in range(1, 61)]
    bodies = [(new_id(), {**strengthen(a, b), "action": "attach"}) for b in partners]
    await client.send_many(settings.relations_queue, bodies)
    replies = await answers_from_two_workers(client, settings, len(bodies), batch_max_size=4)

    assert Counter(reply["error"] for reply in replies) == {0: len(bodies)}
    ids = {reply["relation_id"] for reply in replies}
    assert len(ids) == len(bodies)
    assert await mongo.relations.count_documents(LIVE) == len(bodies)


@pytest.mark.parametrize("write_first", [True, False], ids=["after write", "before write"])
async def test_worker_killed_around_a_detach_detaches_once(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    start_worker: StartWorker,
    write_first: bool,
) -> None:
    a = await seed_profile(mongo, "a5a5a5a5a5a5a5a5a5a5a5a5", 10)
    b = await seed_profile(mongo, "b5b5b5b5b5b5b5b5b5b5b5b5", 11)
    detach = {key: value for key, value in strengthen(a, b).items() if key != "weights"}
    attached, crashing = await crash_during(
        client,
        settings,
        start_worker,
        write_first,
        strengthen(a, b, 1),
        {**detach, "action": "detach"},
    )
    assert await mongo.relations.count_documents(LIVE) == (0 if write_first else 1)

    await start_worker()
    result = await client.reply(timeout=30)
    assert (result["error"], result["relation_id"]) == (0, attached["relation_id"])
    assert await mongo.relations.count_documents(LIVE) == 0
    assert await mongo.relation_keys.count_documents({}) == 0
    again = await ask_relation(client, settings, strengthen(a, b, 3))
    assert (again["created"], again["props"]) == (True, {"weight": 3})
    await crashing.close()
