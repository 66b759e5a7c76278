"""Delivery guarantees (SPEC §9): redelivery, a crash between write and ack, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from bson import ObjectId

from tests.integration.conftest import EventTap, StartWorker, command, first_message, new_id
from tests.integration.crashing import CrashingStore
from worker.domain.shared.ports import ProfileStore, Stores, WriteStatus
from worker.domain.shared.profiles import ProfileWrite
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare as declare_queues
from worker.settings import Settings
from worker.store.fence import Fence
from worker.store.mongo import MongoStore


def incr(email: str = "ada@example.com") -> dict[str, Any]:
    return command(email, data={"age": {"action": "incr", "value": 5}})


async def test_redelivered_command_is_applied_once_and_answered_the_same(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap
) -> None:
    message_id = new_id()
    await client.send(settings.import_queue, incr(), message_id=message_id)
    first = await client.reply()
    await client.send(settings.import_queue, incr(), message_id=message_id)
    second = await client.reply()

    assert first["error"] == 0
    assert second == first, "the stored result is answered again"
    doc = await mongo.profiles.find_one({})
    assert doc["fields"]["age"] == 5
    assert await mongo.profiles.count_documents({}) == 1
    assert (await events.next())["_routing_key"] == "profile.created"
    await client.send(settings.import_queue, command("marker@example.com"))
    await client.reply()
    follow_up = await events.next()
    assert follow_up["profile_id"] != first["profile_id"], "the redelivery emitted no event"


async def test_worker_killed_between_write_and_ack(
    client: CommandClient, settings: Settings, mongo: Any, start_worker: StartWorker
) -> None:
    crashing = CrashingStore.around(settings, "profiles", write_first=True)
    crashing.trap.armed = True
    _, _, doomed = await start_worker(with_store=crashing)
    message_id = new_id()
    await client.send(settings.import_queue, incr(), message_id=message_id)
    await asyncio.wait_for(crashing.trap.reached.wait(), 20)
    doomed.cancel()  # its connection drops without an ack: the broker requeues the command
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert (await mongo.profiles.find_one({}))["fields"]["age"] == 5, "the write had landed"

    await start_worker()
    result = await client.reply(timeout=30)
    assert result["error"] == 0
    assert result["created"] is True, "the answer is the one planned before the crash"
    doc = await mongo.profiles.find_one({})
    assert str(doc["_id"]) == result["profile_id"]
    assert doc["fields"]["age"] == 5, "applied exactly once"
    assert await mongo.profiles.count_documents({}) == 1
    await crashing.close()


class BrokenProfiles:
    """Profile writes that fail in a way that is not an outage."""

    def __init__(self, inner: ProfileStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        raise RuntimeError("disk says no")


class BrokenStore(MongoStore):
    """A store whose every profile write fails."""

    def ports(self, fence: Fence | None = None) -> Stores:
        ports = super().ports(fence)
        return replace(ports, profiles=cast(ProfileStore, BrokenProfiles(ports.profiles)))


async def test_unexpected_failures_are_retried_then_answered_500_and_dead_lettered(
    client: CommandClient, settings: Settings, broker: Any, start_worker: StartWorker
) -> None:
    broken = BrokenStore.from_settings(settings)
    _, stopping, running = await start_worker(with_store=broken)
    message_id = new_id()
    await client.send(settings.import_queue, incr(), message_id=message_id)
    result = await client.reply(timeout=30)
    assert result["error"] == 500
    assert f"after {settings.retry_max_attempts + 1} attempts" in result["error_text"]
    assert "disk says no" in result["error_text"]
    copy = await first_message(broker, f"{settings.import_queue}.dead")
    assert copy.message_id == message_id
    assert copy.headers["x-attempt"] == settings.retry_max_attempts + 1
    stopping.set()  # the worker may still be recording the 500: stop it before the store
    await running
    await broken.close()


class PoisonedProfiles(BrokenProfiles):
    """Profile writes that fail whenever one command is among them, and only then."""

    def __init__(self, inner: ProfileStore, poison: str) -> None:
        super().__init__(inner)
        self._poison = poison

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        if any((write.command_id or "").endswith(f":{self._poison}") for write in writes):
            raise RuntimeError("poisoned command")
        return await self._inner.write(writes)


async def test_a_poison_command_does_not_hold_back_its_batch(
    client: CommandClient, settings: Settings, broker: Any, mongo: Any, start_worker: StartWorker
) -> None:
    poison = new_id()

    class PoisonedStore(MongoStore):
        def ports(self, fence: Fence | None = None) -> Stores:
            ports = super().ports(fence)
            poisoned = PoisonedProfiles(ports.profiles, poison)
            return replace(ports, profiles=cast(ProfileStore, poisoned))

    slow_retries = settings.model_copy(update={"retry_base_delay_ms": 1_000})  # 1 s, then 4 s
    good = [(new_id(), incr(f"good{n}@example.com")) for n in range(20)]
    await declare_queues(broker, slow_retries)
    await client.send_many(settings.import_queue, [*good[:10], (poison, incr()), *good[10:]])
    store = PoisonedStore.from_settings(slow_retries)  # 21 queued: one batch
    _, stopping, running = await start_worker(with_store=store, with_settings=slow_retries)

    replies = await client.replies(21, timeout=60)
    order = [reply.correlation_id for reply in replies]
    assert order[-1] == poison, "every good command is answered before the poison's last try"
    assert [reply["error"] for reply in replies[:-1]] == [0] * 20
    assert replies[-1]["error"] == 500
    assert "poisoned command" in replies[-1]["error_text"]
    copy = await first_message(broker, f"{settings.import_queue}.dead")
    assert copy.message_id == poison
    assert await mongo.profiles.count_documents({}) == 20
    assert await mongo.profiles.count_documents({"fields.age": 5}) == 20
    stopping.set()  # the worker may still be recording the 500: stop it before the store
    await running
    await store.close()


async def test_a_revision_stranded_by_a_crash_does_not_lock_the_profile(
    client: CommandClient, settings: Settings, mongo: Any, worker: Any
) -> None:
    await client.send(settings.import_queue, incr())
    created = await client.reply()
    profile = await mongo.profiles.find_one({})
    stale = datetime.now(UTC) - timedelta(minutes=5)
    await mongo.profile_revisions.insert_one(
        {"_id": f"{created['profile_id']}:{profile['_v'] + 1}", "profile_id": "x", "at": stale}
    )
    await client.send(settings.import_queue, incr())
    updated = await client.reply()
    assert updated["error"] == 0, updated
    assert (await mongo.profiles.find_one({}))["fields"]["age"] == 10


async def test_a_burst_on_one_profile_keeps_queue_order_across_batches(
    client: CommandClient, settings: Settings, mongo: Any, start_worker: StartWorker
) -> None:
    """Twelve increments by email, a reset by profile id, two more increments, in one batch
    (a long batch window): a batch writes at most eight commands on one profile, so the rest
    are carried, unacked, into the next batch ahead of anything newer."""
    await start_worker(with_settings=settings.model_copy(update={"batch_max_wait_ms": 1_000}))
    await client.send(settings.import_queue, command(data={"age": 0}))
    ada = (await client.reply())["profile_id"]
    reset = command(matching="profile_id", profile_id=ada, data={"age": 1000})
    del reset["email"]
    bodies = [*[incr() for _ in range(12)], reset, incr(), incr()]
    sent = [(new_id(), body) for body in bodies]
    await client.send_many(settings.import_queue, sent)

    replies = await client.replies(len(sent), timeout=60)

    assert [reply.correlation_id for reply in replies] == [message_id for message_id, _ in sent]
    assert [reply["error"] for reply in replies] == [0] * len(sent)
    assert (await mongo.profiles.find_one({"_id": ObjectId(ada)}))["fields"]["age"] == 1010
