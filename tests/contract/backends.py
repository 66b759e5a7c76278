"""The stores the contract suite runs against (see `tests/contract/conftest.py`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tests.integration.services import ServiceUrls
from tests.support import CATALOG, ManualClock
from worker.domain.shared.ports import Stores
from worker.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.mongo import MongoStore

SHORT_LEASE_SECONDS = 0.5
"""Long enough that a test's next store call lands inside it on a loaded machine (FerretDB
calls take tens of milliseconds there), short enough that `outlive` costs a second."""


@dataclass(frozen=True)
class Backend:
    name: str
    stores: Stores
    """A worker process's view, with a production-length command lease."""
    dying: Stores
    """Another process on the same data, whose command claims end as soon as `outlive` says."""
    outlive: Callable[[], Awaitable[None]]
    """Let every claim taken through `dying` reach the end of its lease."""
    owner: Callable[[str], Awaitable[Stores]]
    """The ports of the next owner of a partition: its writes carry the partition's next
    epoch (`worker.store.fence`)."""


async def memory_backend() -> AsyncIterator[Backend]:
    clock = ManualClock()
    store = MemoryStore(clock=clock, command_lease_seconds=60)
    await store.catalog.apply(CATALOG)

    async def outlive() -> None:
        clock.advance(61)

    async def owner(partition: str) -> Stores:
        return store.ports(await store.fence(partition))

    yield Backend("memory", store.ports(), store.ports(), outlive, owner)


async def mongo_backend(services: ServiceUrls) -> AsyncIterator[Backend]:
    settings = Settings(
        mongodb_url=services.mongodb_url,
        mongodb_database=f"pw_contract_{uuid.uuid4().hex[:10]}",
        catalog_cache_seconds=0,
        command_lease_seconds=60,
    )
    store = MongoStore.from_settings(settings)
    dying = MongoStore.from_settings(
        settings.model_copy(update={"command_lease_seconds": SHORT_LEASE_SECONDS})
    )
    await store.ensure_indexes()
    await dying.ensure_indexes()
    await store.catalog.apply(CATALOG)

    async def outlive() -> None:
        await asyncio.sleep(SHORT_LEASE_SECONDS * 2)

    async def owner(partition: str) -> Stores:
        return store.ports(await store.fence(partition))

    try:
        yield Backend("mongo", store.ports(), dying.ports(), outlive, owner)
    finally:
        await store.drop(settings.mongodb_database)
        await store.close()
        await dying.close()
