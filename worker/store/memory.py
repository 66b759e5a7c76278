"""An in-memory store implementing the domain's ports with the MongoDB store's semantics.

It keeps what `worker.store` keeps (catalog, profiles and their unique-key claims, relations
and their key claims, the inbox) in dicts, and lands writes the same way: answers written
ahead into the inbox, a write that applies only while its document is still at the version it
was read at and no later owner of the writer's partition wrote it, and the command's marker on
every document it changes, so a copy of a command never applies twice. The same contract
tests (`tests/contract`) run against this store and the MongoDB one.

No call awaits anything inside, so each call is atomic with respect to other tasks, as one
bulk round trip would be from the caller's point of view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from worker.domain.shared.catalog import (
    Account,
    BrokerUser,
    CatalogFile,
    Database,
    RelationType,
    Resource,
    Token,
)
from worker.domain.shared.ports import Stores
from worker.store.fence import Fence
from worker.store.markers import removed_from
from worker.store.memory_documents import Clock, Document, utc_now
from worker.store.memory_inbox import MemoryInbox
from worker.store.memory_profiles import MemoryProfiles
from worker.store.memory_relations import MemoryRelations

M = TypeVar("M", bound=BaseModel)


class MemoryCatalog:
    """Implements `worker.domain.shared.ports.CatalogReader`; `apply` loads a catalog file."""

    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {}
        self.databases: dict[int, Database] = {}
        self.resource_entries: dict[int, Resource] = {}
        self.relation_type_entries: dict[int, RelationType] = {}
        self.tokens: dict[str, Token] = {}
        self.broker_users: dict[str, BrokerUser] = {}

    async def account(self, account_id: int) -> Account | None:
        return self.accounts.get(account_id)

    async def database(self, db_id: int) -> Database | None:
        return self.databases.get(db_id)

    async def token(self, token_sha256: str) -> Token | None:
        return self.tokens.get(token_sha256)

    async def broker_user(self, user: str) -> BrokerUser | None:
        return self.broker_users.get(user)

    async def resources(self, account_id: int) -> tuple[Resource, ...]:
        return tuple(r for r in self.resource_entries.values() if r.account_id == account_id)

    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]:
        return tuple(t for t in self.relation_type_entries.values() if t.account_id == account_id)

    async def apply(self, catalog: CatalogFile) -> dict[str, int]:
        """Upsert every entry of the file; entries not in the file are left alone."""
        _upsert(self.accounts, catalog.accounts, lambda e: e.account_id)
        _upsert(self.databases, catalog.databases, lambda e: e.db_id)
        _upsert(self.resource_entries, catalog.resources, lambda e: e.resource_id)
        _upsert(self.relation_type_entries, catalog.relation_types, lambda e: e.rel_id)
        tokens = tuple(entry.stored() for entry in catalog.tokens)
        _upsert(self.tokens, tokens, lambda e: e.token_sha256)
        _upsert(self.broker_users, catalog.broker_users, lambda e: e.user)
        return {
            "accounts": len(catalog.accounts),
            "databases": len(catalog.databases),
            "resources": len(catalog.resources),
            "relation_types": len(catalog.relation_types),
            "tokens": len(tokens),
            "broker_users": len(catalog.broker_users),
        }

    async def entries(self, kind: str) -> list[BaseModel]:
        """All entries of one kind, in id order."""
        kinds: dict[str, Mapping[Any, BaseModel]] = {
            "accounts": self.accounts,
            "databases": self.databases,
            "resources": self.resource_entries,
            "relation_types": self.relation_type_entries,
            "tokens": self.tokens,
            "broker_users": self.broker_users,
        }
        entries = kinds[kind]
        return [entries[key] for key in sorted(entries)]


def _upsert(into: dict[Any, M], items: Iterable[M], key: Callable[[M], Any]) -> None:
    for item in items:
        into[key(item)] = item


class MemoryStore:
    """Everything the worker keeps, in memory: the ports of `worker.store.mongo.MongoStore`."""

    def __init__(self, *, clock: Clock = utc_now, command_lease_seconds: float = 60.0) -> None:
        self.catalog = MemoryCatalog()
        documents: dict[str, dict[Any, Document]] = {}
        self.inbox = MemoryInbox(clock, command_lease_seconds, documents)
        self.profiles = MemoryProfiles(clock, self.inbox)
        self.relations = MemoryRelations(clock, self.inbox)
        self._epochs: dict[str, int] = {}
        documents.update(profiles=self.profiles.documents, relations=self.relations.documents)
        documents.update(
            {removed_from("profiles"): {}, removed_from("relations"): self.relations.removed}
        )

    def ports(self, fence: Fence | None = None) -> Stores:
        """The domain's view of this store; with `fence`, that of one partition's owner."""
        if fence is None:
            return Stores(self.catalog, self.profiles, self.relations, self.inbox)
        profiles, relations = self.profiles.fenced(fence), self.relations.fenced(fence)
        return Stores(self.catalog, profiles, relations, self.inbox.fenced(fence))

    async def fence(self, partition: str) -> Fence:
        """The next epoch of `partition`."""
        self._epochs[partition] = self._epochs.get(partition, 0) + 1
        return Fence(partition, self._epochs[partition])

    async def forget_before(self, moment: datetime) -> int:
        """Sweep the inbox records older than `moment`."""
        return await self.inbox.forget_before(moment)
