"""The stores the contract suite runs against (see `tests/contract/conftest.py`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tests.integration.services import ServiceUrls
from tests.support import CATALOG, ManualClock
from worker.domain.shared.ports import Stores
from worker.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.mongo import MongoStore


@dataclass(frozen=True)
class Backend:
    name: str
    stores: Stores
    """A worker process's view, unfenced."""
    other: Stores
    """Another process on the same data (its own relation id allocator, on MongoDB)."""
    owner: Callable[[str], Awaitable[Stores]]
    """The ports of the next owner of a partition: its writes carry the partition's next
    epoch (`worker.store.fence`)."""


async def memory_backend() -> AsyncIterator[Backend]:
    clock = ManualClock()
    store = MemoryStore(clock=clock, command_lease_seconds=60)
    await store.catalog.apply(CATALOG)

    async def owner(partition: str) -> Stores:
        return store.ports(await store.fence(partition))

    yield Backend("memory", store.ports(), store.ports(), owner)


async def mongo_backend(services: ServiceUrls) -> AsyncIterator[Backend]:
    settings = Settings(
        mongodb_url=services.mongodb_url,
        mongodb_database=f"pw_contract_{uuid.uuid4().hex[:10]}",
        catalog_cache_seconds=0,
        command_lease_seconds=60,
    )
    store = MongoStore.from_settings(settings)
    other = MongoStore.from_settings(settings)
    await store.ensure_indexes()
    await other.ensure_indexes()
    await store.catalog.apply(CATALOG)

    async def owner(partition: str) -> Stores:
        return store.ports(await store.fence(partition))

    try:
        yield Backend("mongo", store.ports(), other.ports(), owner)
    finally:
        await store.drop(settings.mongodb_database)
        await store.close()
        await other.close()
