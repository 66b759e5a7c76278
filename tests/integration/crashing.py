"""A store whose worker dies around a write: the write hangs forever, once armed, just before
or just after the real one, and the test then kills the worker (cancels its task)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Literal, cast

from worker.domain.shared.ports import Stores
from worker.settings import Settings
from worker.store.fence import Fence
from worker.store.mongo import MongoStore


class HangingWrites:
    """One port whose `write` hangs once `armed` (delegating everything else to the port of
    the partition owner that the worker took last: `inner`)."""

    def __init__(self, inner: Any, write_first: bool) -> None:
        self.inner = inner
        self.write_first = write_first
        self.armed = False
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, writes: Any) -> Any:
        if not self.armed:
            return await self.inner.write(writes)
        statuses = await self.inner.write(writes) if self.write_first else []
        self.reached.set()
        await asyncio.Event().wait()  # never returns: the worker is killed here
        return statuses


class CrashingStore(MongoStore):
    """A MongoStore whose profile or relation writes hang once armed (`trap`)."""

    trap: HangingWrites
    port: Literal["profiles", "relations"]

    @classmethod
    def around(
        cls, settings: Settings, port: Literal["profiles", "relations"], *, write_first: bool
    ) -> CrashingStore:
        store = cls.from_settings(settings)
        store.port = port
        store.trap = HangingWrites(getattr(store, port), write_first)
        return store

    def ports(self, fence: Fence | None = None) -> Stores:
        stores = super().ports(fence)
        self.trap.inner = getattr(stores, self.port)
        return replace(stores, **{self.port: cast(Any, self.trap)})
