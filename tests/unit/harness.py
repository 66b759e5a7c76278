"""Processors on the real store (`tests/realstore.py`), driven as the consumer drives them: a
batch of envelopes in, one outcome each out, then `complete` once the answers count as
published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Literal, cast

import orjson

from tests.realstore import fresh_store
from tests.support import CATALOG, TOKEN, ManualClock
from worker.domain.envelope import Answered, Deferred, Envelope, Outcome, Refused, Replayed
from worker.domain.imports.processor import ImportProcessor
from worker.domain.queries.processor import QueryProcessor
from worker.domain.relations.processor import RelationProcessor
from worker.domain.shared.catalog import CatalogFile
from worker.domain.shared.ports import RelationFilter, Stores
from worker.domain.shared.relations import Relation
from worker.store.fence import Fence
from worker.store.mongo import MongoStore

MAX_MESSAGE_BYTES = 65_536
CATALOG_CACHE = 60.0
"""The catalog is applied before any processor runs and never changes after: read once."""
PARTITION = "unit.partition.0"
ACCOUNTS = tuple(account.account_id for account in CATALOG.accounts)


def envelope(body: dict[str, Any] | bytes, message_id: str | None = None, **extra: Any) -> Envelope:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Envelope(body=raw, message_id=message_id, **extra)


def result_of(outcome: Outcome) -> dict[str, Any]:
    """The answer as the runtime sends it; {} for an outcome that answers nothing now."""
    match outcome:
        case Answered(result) | Refused(result=result) | Replayed(result):
            answer: dict[str, Any] = orjson.loads(result.encode())
            return answer
    return {}


def code_of(outcome: Outcome) -> int:
    """The answer's code; 500 for an outcome that answers nothing now."""
    return int(result_of(outcome).get("error", 500))


def events_of(outcome: Outcome) -> list[dict[str, Any]]:
    """The events published with the answer, as the runtime sends them."""
    if isinstance(outcome, Answered):
        return [orjson.loads(event.encode()) for event in outcome.events]
    return []


def import_command(email: str | None = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    """An import of account 1, database 10, matched by email."""
    body: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN, "data": {"_fname": "A"}}
    if email is not None:
        body["email"] = email
    body.update(overrides)
    return body


def relation_command(action: str, a: str, b: str, **overrides: Any) -> dict[str, Any]:
    """A relation command of type 500 between two profiles given by id."""
    body: dict[str, Any] = {
        "action": action,
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "token": TOKEN,
    }
    body.update(overrides)
    return body


class World:
    """One store on a fresh database, and the domain's clock; each processor made on it is
    the next owner of one partition, as worker processes taking it in turn would be (its
    writes fence those of the processors made before it). What a test checks of the stored
    state it reads through the store's ports, as the domain does."""

    def __init__(self, store: MongoStore, clock: ManualClock) -> None:
        self.store = store
        self.clock = clock
        self._epochs: dict[str, int] = {}

    def ports(self, partition: str = PARTITION) -> Stores:
        """The ports of the next owner of `partition`."""
        self._epochs[partition] = self._epochs.get(partition, 0) + 1
        return self.store.ports(Fence(partition, self._epochs[partition]))

    def imports(self, store: Any = None, partition: str = PARTITION) -> ImportProcessor:
        return ImportProcessor(self._ports(store, partition), self.clock, MAX_MESSAGE_BYTES)

    def relations(self, store: Any = None, partition: str = PARTITION) -> RelationProcessor:
        return RelationProcessor(self._ports(store, partition), self.clock, MAX_MESSAGE_BYTES)

    def queries(self) -> QueryProcessor:
        return QueryProcessor(self.ports(), MAX_MESSAGE_BYTES)

    def _ports(self, port: Any, partition: str) -> Any:
        """The store's ports, with one replaced (e.g. profile writes that crash)."""
        ports = self.ports(partition)
        if port is None:
            return ports
        name = cast(Literal["profiles", "relations"], port.port_name)
        return replace(ports, **{name: port})

    async def profile_id(self, email: str, db_id: int = 10, **data: Any) -> str:
        """A new profile, imported; its id."""
        [outcome] = await run(
            self.imports(),
            [envelope(import_command(email, db_id=db_id, data={"_fname": "P", **data}))],
        )
        assert code_of(outcome) == 0, outcome
        return str(result_of(outcome)["profile_id"])

    async def fields(self, profile_id: str, db_id: int = 10) -> dict[str, Any]:
        """The stored fields of a profile of `db_id` (KeyError: there is none)."""
        found = await self.ports().profiles.profiles(db_id, [profile_id])
        return found[profile_id].fields

    async def profile_count(self) -> int:
        """How many profiles are stored, over every account of the catalog."""
        return sum([await self.ports().profiles.count(account) for account in ACCOUNTS])

    async def relations_stored(self) -> list[Relation]:
        """Every stored relation of the catalog's accounts, by account, then relation id."""
        return [r for account in ACCOUNTS for r in await all_relations(self.ports(), account)]


@asynccontextmanager
async def a_world(mongodb_url: str, catalog: CatalogFile = CATALOG) -> AsyncIterator[World]:
    """A world on a fresh database with `catalog` (the unit tests' by default, whose token
    `import_command` and `relation_command` carry)."""
    async with fresh_store(mongodb_url, catalog, catalog_cache_seconds=CATALOG_CACHE) as store:
        yield World(store, ManualClock())


async def all_relations(ports: Stores, account_id: int, page: int = 500) -> list[Relation]:
    """Every relation of an account, by relation id, read page after page."""
    where, found = RelationFilter(account_id), list[Relation]()
    while True:
        after = (0, found[-1].relation_id) if found else None
        batch = await ports.relations.relation_page(
            where, by_priority=False, after=after, limit=page
        )
        found.extend(batch)
        if len(batch) < page:
            return found


async def run(
    processor: ImportProcessor | RelationProcessor | QueryProcessor,
    envelopes: Sequence[Envelope],
) -> list[Outcome]:
    """Process a batch and, as the consumer does once answers are published, complete it."""
    outcomes = await processor.process(envelopes)
    await processor.complete(outcomes)
    return outcomes


async def drained(
    processor: ImportProcessor | RelationProcessor,
    envelopes: Sequence[Envelope],
    batches: int = 20,
) -> list[Outcome]:
    """Process as the consumer does over several batches: the commands a batch defers come
    back first in the next, until every one is decided (or `batches` ran)."""
    outcomes: dict[int, Outcome] = {}
    pending = list(range(len(envelopes)))
    for _ in range(batches):
        decided = await run(processor, [envelopes[index] for index in pending])
        outcomes.update(zip(pending, decided, strict=True))
        pending = [i for i, o in zip(pending, decided, strict=True) if isinstance(o, Deferred)]
        if not pending:
            break
    return [outcomes[index] for index in range(len(envelopes))]


class CrashingWrites:
    """A port whose `write` dies once: after the real write landed, or before it was made;
    at the first write, or after `writes_before` writes went through."""

    def __init__(
        self, inner: Any, port_name: str, *, after_landing: bool, writes_before: int = 0
    ) -> None:
        self._inner = inner
        self.port_name = port_name
        self.after_landing = after_landing
        self._writes_left = writes_before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, writes: Any) -> Any:
        if self._writes_left:
            self._writes_left -= 1
            return await self._inner.write(writes)
        if self.after_landing:
            await self._inner.write(writes)
        raise WorkerDied("the worker died around its write")


class WorkerDied(Exception):
    """Stands for a process that stops between two steps."""
