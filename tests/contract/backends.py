"""The store the contract suite runs against: the real one (see `tests/contract/conftest.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tests.realstore import fresh_database, opened
from tests.support import CATALOG
from worker.domain.shared.ports import Stores


@dataclass(frozen=True)
class Backend:
    stores: Stores
    """A worker process's view, as the owner of one partition."""
    other: Stores
    """Another process on the same data, owner of another partition (its own relation id
    allocator)."""
    owner: Callable[[str], Awaitable[Stores]]
    """The ports of the next owner of a partition: its writes carry the partition's next
    epoch (`worker.store.fence`)."""


async def mongo_backend(mongodb_url: str) -> AsyncIterator[Backend]:
    """`MongoStore` on a fresh database, and a second process's store on the same data."""
    async with (
        fresh_database(mongodb_url) as settings,
        opened(settings, CATALOG) as store,
        opened(settings) as other,
    ):

        async def owner(partition: str) -> Stores:
            return store.ports(await store.fence(partition))

        mine = store.ports(await store.fence("contract.partition.0"))
        theirs = other.ports(await other.fence("contract.partition.1"))
        yield Backend(mine, theirs, owner)
