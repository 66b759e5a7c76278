"""What the store relies on from the MongoDB-wire server, asserted on the real one.

MongoDB documents these guarantees; the test server must give them too (issue 22): an update
is atomic on one document, its filter included, so of concurrent conditional updates on one
version exactly one wins; a unique index rejects the second of two concurrent inserts;
`find_one_and_update` reads and writes as one step; majority write and read concerns are
accepted. Filters name `_id` (or a unique key) plus conditions, the shape that the launcher's
planner serves from the index on mongo-java-server; they must match exactly what a scan would.
Semantics only: the speed of such filters is measured by `python -m bench.server_ops`.
PyMongo only, nothing of `worker.store`; each test has a database of its own, dropped after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern

from tests.integration.services import ServiceUrls

pytestmark = pytest.mark.integration

Doc = dict[str, Any]
CLIENTS = 3
"""Client objects, each with a connection pool of its own: concurrency across connections."""
TASKS_PER_CLIENT = 6
ROUNDS = 20
"""Attempts per task in the compare-and-swap races."""


@pytest.fixture
async def databases(services: ServiceUrls) -> AsyncIterator[list[AsyncDatabase[Doc]]]:
    """The test's own database, seen through `CLIENTS` separate clients."""
    name = f"pw_guarantees_{uuid.uuid4().hex[:12]}"
    clients: list[AsyncMongoClient[Doc]] = [
        AsyncMongoClient(services.mongodb_url, serverSelectionTimeoutMS=10_000)
        for _ in range(CLIENTS)
    ]
    yield [client[name] for client in clients]
    await clients[0].drop_database(name)
    for client in clients:
        await client.close()


async def everywhere(
    databases: list[AsyncDatabase[Doc]], task: Callable[[AsyncCollection[Doc], int], Awaitable[Any]]
) -> list[Any]:
    """Run `task(collection, n)` as TASKS_PER_CLIENT asyncio tasks on each client at once."""
    collections = [database["c"] for database in databases]
    return await asyncio.gather(
        *(task(collections[n % CLIENTS], n) for n in range(CLIENTS * TASKS_PER_CLIENT))
    )


FENCE_OPEN: Doc = {"fence.p1": {"$not": {"$gt": 3}}}
"""A fence-shaped condition that every document below passes (epoch 3, or none at all)."""


@pytest.mark.parametrize("condition", [{}, FENCE_OPEN], ids=["version", "version+fence"])
async def test_conditional_updates_have_one_winner_per_version(
    databases: list[AsyncDatabase[Doc]], condition: Doc
) -> None:
    await databases[0].c.insert_many(
        [{"_id": "hot", "v": 0, "fence": {"p1": 3}}, {"_id": "other", "v": 0}]
    )

    async def race(collection: AsyncCollection[Doc], me: int) -> int:
        won = 0
        for _ in range(ROUNDS):
            seen = await collection.find_one({"_id": "hot"})
            assert seen is not None
            result = await collection.update_one(
                {"_id": "hot", "v": seen["v"], **condition},
                {"$inc": {"v": 1}, "$push": {"won": [me, seen["v"]]}},
            )
            won += result.modified_count
        return won

    wins = await everywhere(databases, race)
    hot = await databases[1].c.find_one({"_id": "hot"})
    assert hot is not None
    assert hot["v"] == sum(wins)  # no lost update, no double count
    assert [version for _, version in hot["won"]] == list(range(hot["v"]))  # one winner each
    assert sum(wins) < CLIENTS * TASKS_PER_CLIENT * ROUNDS  # the race did refuse stale versions
    assert await databases[2].c.find_one({"_id": "other"}) == {"_id": "other", "v": 0}


async def test_conditional_updates_across_many_documents_lose_nothing(
    databases: list[AsyncDatabase[Doc]],
) -> None:
    keys = 40
    await databases[0].c.insert_many([{"_id": k, "v": 0} for k in range(keys)])

    async def race(collection: AsyncCollection[Doc], me: int) -> list[int]:
        won = [0] * keys
        for round_ in range(ROUNDS):
            key = (me * 7 + round_) % 5  # few keys, so that tasks collide on them
            seen = await collection.find_one({"_id": key})
            assert seen is not None
            result = await collection.update_one(
                {"_id": key, "v": seen["v"], **FENCE_OPEN}, {"$inc": {"v": 1}}
            )
            won[key] += result.modified_count
        return won

    wins = await everywhere(databases, race)
    stored = {doc["_id"]: doc["v"] async for doc in databases[1].c.find()}
    assert stored == {k: sum(won[k] for won in wins) for k in range(keys)}


async def test_a_closed_fence_refuses_the_update(databases: list[AsyncDatabase[Doc]]) -> None:
    await databases[0].c.insert_many(
        [{"_id": "fenced", "v": 1, "fence": {"p1": 4}}, {"_id": "unfenced", "v": 1}]
    )
    refused = await databases[0].c.update_one(
        {"_id": "fenced", "v": 1, **FENCE_OPEN}, {"$inc": {"v": 1}}
    )
    passed = await databases[0].c.update_one(
        {"_id": "unfenced", "v": 1, **FENCE_OPEN}, {"$inc": {"v": 1}}
    )
    assert (refused.matched_count, passed.matched_count) == (0, 1)
    # an upsert whose condition fails on an existing `_id` inserts nothing: a duplicate key
    with pytest.raises(DuplicateKeyError):
        await databases[0].c.update_one(
            {"_id": "fenced", "v": 1, **FENCE_OPEN}, {"$inc": {"v": 1}}, upsert=True
        )
    assert await databases[0].c.find_one({"_id": "fenced"}, {"v": 1}) == {"_id": "fenced", "v": 1}


async def test_a_unique_index_admits_one_of_concurrent_duplicates(
    databases: list[AsyncDatabase[Doc]],
) -> None:
    await databases[0].people.create_index("email", unique=True)

    async def insert(collection: AsyncCollection[Doc], me: int) -> list[str]:
        people = collection.database.people
        outcomes = []
        for round_ in range(ROUNDS):
            for into, document in (
                (collection, {"_id": f"id{round_}", "by": me}),
                (people, {"email": f"e{round_}", "by": me}),
            ):
                try:
                    await into.insert_one(document)
                    outcomes.append("inserted")
                except DuplicateKeyError as refused:
                    assert refused.code == 11000
                    outcomes.append("duplicate")
        return outcomes

    outcomes = [o for task in await everywhere(databases, insert) for o in task]
    assert outcomes.count("inserted") == 2 * ROUNDS  # one `_id` and one email per round
    assert outcomes.count("duplicate") == 2 * ROUNDS * (CLIENTS * TASKS_PER_CLIENT - 1)
    assert await databases[1].c.count_documents({}) == ROUNDS
    for round_ in range(ROUNDS):
        assert await databases[2].people.count_documents({"email": f"e{round_}"}) == 1


async def test_find_one_and_update_reads_and_writes_in_one_step(
    databases: list[AsyncDatabase[Doc]],
) -> None:
    limit = 25
    await databases[0].c.insert_many(
        [{"_id": "lease", "owner": None, "epoch": 0}, {"_id": "tickets", "n": 0}]
    )

    async def take(collection: AsyncCollection[Doc], me: int) -> tuple[Doc | None, list[int]]:
        lease = await collection.find_one_and_update(
            {"_id": "lease", "owner": None},
            {"$set": {"owner": me}, "$inc": {"epoch": 1}},
            return_document=ReturnDocument.AFTER,
        )
        tickets = []
        for _ in range(ROUNDS):
            after = await collection.find_one_and_update(
                {"_id": "tickets", "n": {"$lt": limit}},
                {"$inc": {"n": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if after is not None:
                tickets.append(after["n"])
        return lease, tickets

    results = await everywhere(databases, take)
    leases = [lease for lease, _ in results if lease is not None]
    assert len(leases) == 1
    assert leases[0]["epoch"] == 1
    assert await databases[1].c.find_one({"_id": "lease"}) == {
        "_id": "lease",
        "owner": leases[0]["owner"],
        "epoch": 1,
    }
    tickets = sorted(t for _, taken in results for t in taken)
    assert tickets == list(range(1, limit + 1))  # each value handed out once, none past the limit


async def test_majority_write_and_read_concerns_are_accepted(
    databases: list[AsyncDatabase[Doc]],
) -> None:
    majority = databases[0].c.with_options(
        write_concern=WriteConcern("majority", wtimeout=10_000),
        read_concern=ReadConcern("majority"),
    )
    assert (await majority.insert_one({"_id": 1, "v": 0})).acknowledged
    updated = await majority.update_one({"_id": 1, "v": 0}, {"$inc": {"v": 1}})
    assert (updated.acknowledged, updated.modified_count) == (True, 1)
    assert await majority.find_one({"_id": 1}) == {"_id": 1, "v": 1}
    assert await databases[1].c.find_one({"_id": 1}) == {"_id": 1, "v": 1}


def matches(document: Doc, fence_at_most: int, kind: str | None = None) -> bool:
    """The filters below, evaluated here: `fence.p1` absent or ≤ fence_at_most, and the kind."""
    fence = document.get("fence", {}).get("p1")
    return (fence is None or fence <= fence_at_most) and kind in (None, document["kind"])


async def test_filters_on_a_unique_key_plus_conditions_match_as_a_scan_would(
    databases: list[AsyncDatabase[Doc]],
) -> None:
    documents: list[Doc] = [
        {"_id": n, "email": f"e{n}", "kind": "ab"[n % 2], "v": n % 5}
        | ({"fence": {"p1": n % 7}} if n % 3 else {})
        for n in range(2_000)
    ]
    collection = databases[0].c
    await collection.create_index("email", unique=True)
    await collection.create_index("kind")
    await collection.insert_many(documents)
    sample = documents[::97]
    for document in sample:
        for flt in (
            {"_id": document["_id"], "v": document["v"], **FENCE_OPEN},
            {"email": document["email"], "v": document["v"], **FENCE_OPEN},
            {"_id": document["_id"], "email": document["email"], **FENCE_OPEN},
            {"_id": document["_id"], "$or": [{"kind": "a"}, {"v": {"$gt": 10}}]},
        ):
            expected = [document] if matches_python(flt, document) else []
            assert await collection.find(flt).to_list() == expected, flt
    ids = [document["_id"] for document in sample]
    got = await collection.find({"_id": {"$in": ids}, "kind": "a", **FENCE_OPEN}).to_list()
    expected = [d for d in sample if matches(d, 3, "a")]
    assert sorted(got, key=lambda d: d["_id"]) == expected
    missing = await collection.find({"_id": -1, "v": 0}).to_list()
    assert missing == []
    assert await collection.count_documents({"_id": {"$in": ids}, "v": {"$lt": 3}}) == sum(
        1 for d in sample if d["v"] < 3
    )


def matches_python(flt: Doc, document: Doc) -> bool:
    """The sample filters of the test above, evaluated in Python on the one document they name."""
    if "$or" in flt:
        return bool(document["kind"] == "a")
    return matches(document, 3) and all(
        document[key] == value for key, value in flt.items() if not key.startswith("fence")
    )
