"""The fence: a process stalled between planning a profile's write (written ahead) and sending
it, while its partition went to another process that applied the command, never lands its
write when it wakes up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tests.integration.conftest import StartWorker, command, new_id
from tests.integration.proxy import started_proxy, through
from worker.domain.shared.ports import WriteStatus
from worker.domain.shared.profiles import ProfileWrite
from worker.runtime.client import CommandClient
from worker.settings import Settings
from worker.store.mongo import MongoStore
from worker.store.profiles import ProfileRepository


class StallingProfiles(ProfileRepository):
    """Profiles whose next write, once armed, stops right after its answer was written ahead
    (at its claims) and goes on only when `wake` is set, whatever happened to the batch that
    made it (a stalled process: its tasks are not cancelled while it sleeps)."""

    armed = False
    reached: asyncio.Event
    wake: asyncio.Event
    written: asyncio.Event
    statuses: list[WriteStatus]

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        if not self.armed:
            return await super().write(writes)
        type(self).armed = False
        stalled = asyncio.ensure_future(self._stalled(writes))
        return await asyncio.shield(stalled)

    async def _stalled(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        self.statuses[:] = await super().write(writes)
        self.written.set()
        return self.statuses

    async def claim(self, writes: Sequence[ProfileWrite]) -> list[bool]:
        claimed = await super().claim(writes)
        if any(write.before is not None for write in writes) and not self.reached.is_set():
            self.reached.set()
            await self.wake.wait()
        return claimed


async def test_a_stalled_owner_cannot_write_after_its_successor(
    client: CommandClient, settings: Settings, start_worker: StartWorker, mongo: Any
) -> None:
    short = settings
    proxy = await started_proxy(short.amqp_url)
    stalling = MongoStore.from_settings(short)
    stalling.profiles.__class__ = StallingProfiles
    StallingProfiles.reached, StallingProfiles.wake = asyncio.Event(), asyncio.Event()
    StallingProfiles.written = asyncio.Event()
    StallingProfiles.statuses = []
    successor = MongoStore.from_settings(short)
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    try:
        cut_off = short.model_copy(update={"amqp_url": through(short.amqp_url, proxy)})
        _, stopping, task = await start_worker(with_store=stalling, with_settings=cut_off)
        running.append((stopping, task))
        email = "stalled@example.com"
        await client.send(short.import_queue, command(email, data={"age": 1}), message_id=new_id())
        [created] = await client.replies(1, timeout=30)
        assert created["error"] == 0

        StallingProfiles.armed = True
        bump = command(email, data={"age": {"action": "incr", "value": 1}})
        await client.send(short.import_queue, bump, message_id=new_id())
        await asyncio.wait_for(StallingProfiles.reached.wait(), 30)
        await proxy.cut()  # the broker gives its partition away; it sleeps on

        _, stopping, task = await start_worker(with_store=successor, with_settings=short)
        running.append((stopping, task))
        [answer] = await client.replies(1, timeout=60)
        assert answer["error"] == 0
        doc = await mongo.profiles.find_one({"fields.email": email})
        assert doc["fields"]["age"] == 2, "the successor applied the increment"

        StallingProfiles.wake.set()  # the stalled write goes on, planned on an old version
        await asyncio.wait_for(StallingProfiles.written.wait(), 30)
        assert StallingProfiles.statuses == ["fenced"]
        doc = await mongo.profiles.find_one({"fields.email": email})
        assert doc["fields"]["age"] == 2, "applied once: the stale write did not land"
    finally:
        StallingProfiles.wake.set()
        for stopping, _ in running:  # stopped before their stores are closed
            stopping.set()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)
        await proxy.cut()
        await stalling.close()
        await successor.close()
