"""A short-lived cache in front of the catalog: it is read for every command."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from worker.domain.shared.catalog import (
    Account,
    BrokerUser,
    Database,
    RelationType,
    Resource,
    Token,
)
from worker.domain.shared.ports import CatalogReader

T = TypeVar("T")


class CachedCatalog:
    """Keeps each catalog answer (found or not) for `ttl_seconds`; 0 disables caching."""

    def __init__(self, source: CatalogReader, ttl_seconds: float) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._entries: dict[tuple[str, Any], tuple[float, Any]] = {}

    async def _get(self, kind: str, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        hit = self._entries.get((kind, key))
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = await load()
        if self._ttl > 0:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[(kind, key)] = (now + self._ttl, value)
        return value

    async def account(self, account_id: int) -> Account | None:
        return await self._get("account", account_id, lambda: self._source.account(account_id))

    async def database(self, db_id: int) -> Database | None:
        return await self._get("database", db_id, lambda: self._source.database(db_id))

    async def token(self, token_sha256: str) -> Token | None:
        return await self._get("token", token_sha256, lambda: self._source.token(token_sha256))

    async def broker_user(self, user: str) -> BrokerUser | None:
        return await self._get("broker_user", user, lambda: self._source.broker_user(user))

    async def resources(self, account_id: int) -> tuple[Resource, ...]:
        return await self._get("resources", account_id, lambda: self._source.resources(account_id))

    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]:
        return await self._get(
            "relation_types", account_id, lambda: self._source.relation_types(account_id)
        )
