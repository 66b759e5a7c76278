"""The catalog in MongoDB: one collection per kind, keyed by the entry's natural id."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from worker.domain.shared.catalog import (
    Account,
    BrokerUser,
    CatalogFile,
    Database,
    RelationType,
    Resource,
    Token,
)
from worker.store.errors import translated

M = TypeVar("M", bound=BaseModel)

KINDS: dict[str, tuple[type[BaseModel], str]] = {
    "accounts": (Account, "account_id"),
    "databases": (Database, "db_id"),
    "resources": (Resource, "resource_id"),
    "relation_types": (RelationType, "rel_id"),
    "tokens": (Token, "token_sha256"),
    "broker_users": (BrokerUser, "user"),
}


class CatalogRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._db = db

    def _collection(self, kind: str) -> Any:
        return self._db[f"catalog_{kind}"]

    async def _one(self, kind: str, key: object, model: type[M]) -> M | None:
        async with translated():
            doc = await self._collection(kind).find_one({"_id": key}, {"_id": 0})
        return None if doc is None else model.model_validate(doc)

    async def account(self, account_id: int) -> Account | None:
        return await self._one("accounts", account_id, Account)

    async def database(self, db_id: int) -> Database | None:
        return await self._one("databases", db_id, Database)

    async def token(self, token_sha256: str) -> Token | None:
        return await self._one("tokens", token_sha256, Token)

    async def broker_user(self, user: str) -> BrokerUser | None:
        return await self._one("broker_users", user, BrokerUser)

    async def resources(self, account_id: int) -> tuple[Resource, ...]:
        async with translated():
            docs = (
                await self._collection("resources")
                .find({"account_id": account_id}, {"_id": 0})
                .to_list()
            )
        return tuple(Resource.model_validate(doc) for doc in docs)

    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]:
        async with translated():
            docs = (
                await self._collection("relation_types")
                .find({"account_id": account_id}, {"_id": 0})
                .to_list()
            )
        return tuple(RelationType.model_validate(doc) for doc in docs)

    async def apply(self, catalog: CatalogFile) -> dict[str, int]:
        """Upsert every entry of the file; entries not in the file are left alone."""
        entries: dict[str, tuple[BaseModel, ...]] = {
            "accounts": catalog.accounts,
            "databases": catalog.databases,
            "resources": catalog.resources,
            "relation_types": catalog.relation_types,
            "tokens": tuple(entry.stored() for entry in catalog.tokens),
            "broker_users": catalog.broker_users,
        }
        counts: dict[str, int] = {}
        async with translated():
            for kind, items in entries.items():
                key_name = KINDS[kind][1]
                operations = [
                    ReplaceOne(
                        {"_id": getattr(item, key_name)}, item.model_dump(mode="json"), upsert=True
                    )
                    for item in items
                ]
                if operations:
                    await self._collection(kind).bulk_write(operations, ordered=True)
                counts[kind] = len(operations)
        return counts

    async def entries(self, kind: str) -> list[BaseModel]:
        """All entries of one kind, in id order."""
        model = KINDS[kind][0]
        async with translated():
            docs = await self._collection(kind).find({}, {"_id": 0}).sort("_id", 1).to_list()
        return [model.model_validate(doc) for doc in docs]
