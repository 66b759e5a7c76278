"""Several worker processes on one queue: uniqueness and exactly-once effects still hold."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

from tests.integration.conftest import command, new_id, worker_environment
from worker.runtime.client import CommandClient, Reply
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

EMAILS = 12
ROUNDS = 15


async def answers_from_two_workers(
    client: CommandClient, settings: Settings, count: int, batch_max_size: int
) -> list[Reply]:
    """Run two `profile-worker run` processes on the queued commands until `count` answers."""
    env = worker_environment(
        settings, batch_max_size=batch_max_size, prefetch_count=2 * batch_max_size
    )
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=env, stderr=asyncio.subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    try:
        return await client.replies(count, timeout=120)
    finally:
        for process in workers:
            process.terminate()
        await asyncio.gather(*(process.wait() for process in workers))


async def test_two_processes_racing_on_the_same_emails(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, broker: Any
) -> None:
    await declare(broker, settings)
    bodies = [
        (new_id(), command(f"Racer{n}@Example.com", data={"age": {"action": "incr", "value": 1}}))
        for _ in range(ROUNDS)
        for n in range(EMAILS)
    ]
    await client.send_many(settings.import_queue, bodies)
    replies = await answers_from_two_workers(client, settings, len(bodies), batch_max_size=8)

    assert Counter(reply["error"] for reply in replies) == {0: len(bodies)}
    assert sum(1 for reply in replies if reply["created"]) == EMAILS
    docs = await mongo.profiles.find({}).to_list()
    assert len(docs) == EMAILS, "one profile per email, whichever process created it"
    assert sorted(doc["fields"]["age"] for doc in docs) == [ROUNDS] * EMAILS
    by_email = Counter(reply["profile_id"] for reply in replies)
    assert sorted(by_email.values()) == [ROUNDS] * EMAILS


async def test_two_processes_racing_for_one_unique_value(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, broker: Any
) -> None:
    await declare(broker, settings)
    contenders = 24
    bodies = [
        (new_id(), command(f"contender{n}@example.com", data={"loyalty_id": "GOLD-1"}))
        for n in range(contenders)
    ]
    await client.send_many(settings.import_queue, bodies)
    replies = await answers_from_two_workers(client, settings, contenders, batch_max_size=4)

    assert Counter(reply["error"] for reply in replies) == {0: 1, 435: contenders - 1}
    assert await mongo.profiles.count_documents({}) == 1
    assert await mongo.profiles.count_documents({"fields.loyalty_id": "GOLD-1"}) == 1
