"""The MongoDB store: one client and the repositories that implement the domain's ports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from pymongo import AsyncMongoClient

from worker.domain.shared.catalog_cache import CachedCatalog
from worker.domain.shared.ports import Stores
from worker.settings import Settings
from worker.store.catalog import CatalogRepository
from worker.store.errors import translated, translated_now
from worker.store.fence import EPOCHS, Fence, next_fence
from worker.store.inbox import MongoInbox
from worker.store.profiles import ProfileRepository
from worker.store.relations import RelationRepository


class MongoStore:
    """Everything the worker keeps, on any MongoDB-wire server."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        catalog_cache_seconds: float = 0.0,
    ) -> None:
        self._client = client
        db = client[database]
        self.catalog = CatalogRepository(db)
        self.inbox = MongoInbox(db)
        self.profiles = ProfileRepository(db, self.inbox)
        self.relations = RelationRepository(db, self.inbox)
        self._catalog_reads = CachedCatalog(self.catalog, catalog_cache_seconds)
        self._epochs = db[EPOCHS]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        with translated_now():  # a URL or option the driver refuses: a ConfigurationError
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                settings.mongodb_url,
                tz_aware=True,
                tzinfo=UTC,
                appname=settings.connection_name,
                serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
                connectTimeoutMS=settings.mongodb_timeout_ms,
                socketTimeoutMS=settings.mongodb_timeout_ms * 6,
                w=_write_concern(settings.mongodb_write_concern),
                readConcernLevel=settings.mongodb_read_concern,
            )
        return cls(
            client,
            settings.mongodb_database,
            catalog_cache_seconds=settings.catalog_cache_seconds,
        )

    def ports(self, fence: Fence | None = None) -> Stores:
        """The domain's view of this store; with `fence`, that of one partition's owner,
        whose writes never land after a later owner's (see `fence.py`)."""
        if fence is None:
            return Stores(self._catalog_reads, self.profiles, self.relations, self.inbox)
        return Stores(
            self._catalog_reads,
            self.profiles.fenced(fence),
            self.relations.fenced(fence),
            self.inbox.fenced(fence),
        )

    async def fence(self, partition: str) -> Fence:
        """The next epoch of `partition`, for the process that has just taken it."""
        return await next_fence(self._epochs, partition)

    async def ensure_indexes(self) -> None:
        """Prepare the database at start: create the indexes."""
        await self.profiles.ensure_indexes()
        await self.inbox.ensure_indexes()
        await self.relations.ensure_indexes()

    async def ping(self) -> None:
        async with translated():
            await self._client.admin.command("ping")

    async def forget_before(self, moment: datetime) -> int:
        """Sweep the inbox records and the relations' tombstones older than `moment`."""
        await self.relations.forget_removed_before(moment)
        return await self.inbox.forget_before(moment)

    async def close(self) -> None:
        await self._client.close()

    async def drop(self, database: str) -> None:
        """Drop a whole database (tests and demos)."""
        await self._client.drop_database(database)


def _write_concern(w: str) -> int | str:
    """The setting as the driver takes it: a number of members, or "majority"."""
    return int(w) if w.isdigit() else w
