"""The real store for tests: `MongoStore` on the MongoDB-wire test server (`MONGODB_URL`), in a
database of the test's own (`pw_t_<uuid>`), dropped after it.

The processor tests, the chaos findings and the store contract suite all run on it, through
the store's public API only (`from_settings`, `ensure_indexes`, `catalog.apply`, `ports`,
`fence`, `drop`, `close`): what they assert is what the domain sees through its ports.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support import CATALOG
from worker.domain.shared.catalog import CatalogFile
from worker.settings import Settings
from worker.store.mongo import MongoStore


@asynccontextmanager
async def fresh_database(
    mongodb_url: str, *, catalog_cache_seconds: float = 0.0
) -> AsyncIterator[Settings]:
    """The settings of a database no other test uses; dropped when the block ends."""
    settings = Settings(
        mongodb_url=mongodb_url,
        mongodb_database=f"pw_t_{uuid.uuid4().hex}",
        catalog_cache_seconds=catalog_cache_seconds,
    )
    try:
        yield settings
    finally:
        store = MongoStore.from_settings(settings)
        try:
            await store.drop(settings.mongodb_database)
        finally:
            await store.close()


@asynccontextmanager
async def opened(
    settings: Settings, catalog: CatalogFile | None = None
) -> AsyncIterator[MongoStore]:
    """A store on `settings` as a worker process opens one (its own client), with `catalog`
    applied if given; closed when the block ends."""
    store = MongoStore.from_settings(settings)
    try:
        await store.ensure_indexes()
        if catalog is not None:
            await store.catalog.apply(catalog)
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def fresh_store(
    mongodb_url: str,
    catalog: CatalogFile = CATALOG,
    *,
    catalog_cache_seconds: float = 0.0,
) -> AsyncIterator[MongoStore]:
    """A store on a fresh database with `catalog` applied (the unit tests' by default)."""
    async with (
        fresh_database(mongodb_url, catalog_cache_seconds=catalog_cache_seconds) as settings,
        opened(settings, catalog) as store,
    ):
        yield store
