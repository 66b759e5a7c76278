"""The MongoDB store: one client, the repositories, and the `Store` interface over them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Self

from pymongo import AsyncMongoClient

from worker.domain.catalog import (
    Account,
    BrokerUser,
    CatalogFile,
    Database,
    RelationType,
    Resource,
    Token,
)
from worker.domain.catalog_cache import CachedCatalog
from worker.domain.ports import InboxEntry, RelationFilter, WriteStatus
from worker.domain.profiles import Profile, ProfileWrite
from worker.domain.relations import Relation, RelationWrite
from worker.settings import Settings
from worker.store.catalog import CatalogRepository
from worker.store.errors import translated
from worker.store.inbox import InboxRepository
from worker.store.profiles import ProfileRepository
from worker.store.relations import RelationRepository


class MongoStore:
    """Implements `worker.domain.ports.Store` on any MongoDB-wire server."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        catalog_cache_seconds: float = 0.0,
    ) -> None:
        self._client = client
        db = client[database]
        self.catalog = CatalogRepository(db)
        self._catalog_reads = CachedCatalog(self.catalog, catalog_cache_seconds)
        self._profiles = ProfileRepository(db)
        self._inbox = InboxRepository(db)
        self._relations = RelationRepository(db)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_url,
            tz_aware=True,
            tzinfo=UTC,
            appname=settings.connection_name,
            serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
            connectTimeoutMS=settings.mongodb_timeout_ms,
            socketTimeoutMS=settings.mongodb_timeout_ms * 6,
        )
        return cls(client, settings.mongodb_database, settings.catalog_cache_seconds)

    async def ensure_indexes(self) -> None:
        await self._profiles.ensure_indexes()
        await self._inbox.ensure_indexes()
        await self._relations.ensure_indexes()

    async def ping(self) -> None:
        async with translated():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()

    async def drop(self, database: str) -> None:
        """Drop a whole database (tests and demos)."""
        await self._client.drop_database(database)

    # catalog
    async def account(self, account_id: int) -> Account | None:
        return await self._catalog_reads.account(account_id)

    async def database(self, db_id: int) -> Database | None:
        return await self._catalog_reads.database(db_id)

    async def token(self, token_sha256: str) -> Token | None:
        return await self._catalog_reads.token(token_sha256)

    async def broker_user(self, user: str) -> BrokerUser | None:
        return await self._catalog_reads.broker_user(user)

    async def resources(self, account_id: int) -> tuple[Resource, ...]:
        return await self._catalog_reads.resources(account_id)

    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]:
        return await self._catalog_reads.relation_types(account_id)

    async def apply_catalog(self, catalog: CatalogFile) -> dict[str, int]:
        return await self.catalog.apply(catalog)

    # profiles
    async def owners(self, keys: Sequence[str]) -> dict[str, str]:
        return await self._profiles.owners(keys)

    async def profiles(self, db_id: int, profile_ids: Sequence[str]) -> dict[str, Profile]:
        return await self._profiles.profiles(db_id, profile_ids)

    async def matching(self, db_id: int, field: str, value: Any, *, all_of: bool) -> list[str]:
        return await self._profiles.matching(db_id, field, value, all_of=all_of)

    async def count(self, account_id: int) -> int:
        return await self._profiles.count(account_id)

    async def apply(self, writes: Sequence[ProfileWrite], *, replay: bool) -> list[WriteStatus]:
        return await self._profiles.apply(writes, replay=replay)

    async def profile_account(self, profile_id: str) -> int | None:
        return await self._profiles.profile_account(profile_id)

    # relations
    async def relations_by_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Relation], dict[str, int]]:
        return await self._relations.by_keys(keys)

    async def relations_by_ids(self, relation_ids: Sequence[int]) -> dict[int, Relation]:
        return await self._relations.by_ids(relation_ids)

    async def new_relation_ids(self, count: int) -> list[int]:
        return await self._relations.new_ids(count)

    async def apply_relations(self, writes: Sequence[RelationWrite]) -> list[WriteStatus]:
        return await self._relations.apply(writes)

    async def count_relations(self, where: RelationFilter) -> int:
        return await self._relations.count(where)

    async def relation_page(
        self, where: RelationFilter, *, by_priority: bool, after: tuple[int, int] | None, limit: int
    ) -> list[Relation]:
        return await self._relations.page(where, by_priority=by_priority, after=after, limit=limit)

    async def property_sum(self, where: RelationFilter, name: str) -> int | float:
        return await self._relations.property_sum(where, name)

    async def top_relations(self, where: RelationFilter, name: str, limit: int) -> list[Relation]:
        return await self._relations.top(where, name, limit)

    # inbox
    async def lookup(self, dedup_ids: Sequence[str]) -> dict[str, InboxEntry]:
        return await self._inbox.lookup(dedup_ids)

    async def begin(self, entries: Sequence[InboxEntry], at: datetime) -> None:
        await self._inbox.begin(entries, at)

    async def finish(self, dedup_ids: Sequence[str]) -> None:
        await self._inbox.finish(dedup_ids)

    async def forget_before(self, moment: datetime) -> int:
        await self._profiles.forget_revisions_before(moment)
        await self._relations.forget_revisions_before(moment)
        return await self._inbox.forget_before(moment)
