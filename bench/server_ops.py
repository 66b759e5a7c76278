"""Per-operation cost of the worker's query shapes as a collection grows, and a few semantics.

    python -m bench.server_ops [--sizes 1000,10000,50000] [--repeat 30]

For each size: a fresh collection of that many profile-shaped documents (with the worker's
secondary indexes), then the mean milliseconds of each operation over `--repeat` runs (batch
operations over a third as many; slow ones stop after 3 runs or 15 s), after one warm-up run.
Costs that stay flat as the collection grows mean the filter reached an index; costs that grow
with it mean a scan. The conditional updates (`_id` plus a version, and plus a fence epoch) are
the shapes whose atomicity tests/integration/test_server_guarantees.py asserts; here is their
speed. Then it checks that a duplicate `_id` is reported as code 11000 and that
`$match`/`$group`/`$sum`/`$sort`/`$limit` aggregate correctly. Uses MONGODB_URL (default
mongodb://127.0.0.1:27017/) and drops its database.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

DATABASE = "pw_opsbench"
BATCH = 256


def profile(n: int, now: datetime) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "db_id": 10,
        "account_id": 1 + n % 4,
        "fields": {
            "_fname": f"Name{n}",
            "email": f"ops{n}@example.com",
            "city": "Bergen" if n % 3 else "Oslo",
            "age": 20 + n % 50,
            "interests": "a, b",
            "loyalty_id": f"L{n}",
            "phones": [f"+47{n:08d}"],
        },
        "_v": 1,
        "_applied": {f"m{n}": 1},
        "subs": {},
        "created_at": now,
        "updated_at": now,
    }


def timed(repeat: int, op: Callable[[int], object], budget_s: float = 15.0) -> float:
    """Mean milliseconds of op(i) over up to `repeat` runs after one untimed warm-up run (which
    also opens the database connections it needs); slow operations stop at 3 runs or once
    `budget_s` has passed."""
    op(-1)
    started = time.perf_counter()
    runs = 0
    while runs < repeat and (runs < 3 or time.perf_counter() - started < budget_s):
        op(runs)
        runs += 1
    return (time.perf_counter() - started) * 1000 / runs


def measure(  # noqa: C901 - one closure per measured operation
    client: MongoClient[dict[str, Any]], size: int, repeat: int
) -> dict[str, float]:
    db = client[DATABASE]
    db.drop_collection("profiles")
    coll = db["profiles"]
    coll.create_index([("db_id", 1), ("fields.phones", 1)])
    coll.create_index([("account_id", 1)])
    now = datetime.now(UTC)
    started = time.perf_counter()
    docs = [profile(n, now) for n in range(size)]
    for first in range(0, size, 1000):
        coll.insert_many(docs[first : first + 1000], ordered=False)
    fill = time.perf_counter() - started
    rng = random.Random(size)
    ids = [doc["_id"] for doc in docs]
    # distinct documents for the version-conditioned update, so that `_v: 1` still matches
    fresh = iter(rng.sample(ids, 2 * (repeat + 1)))
    batches = max(1, repeat // 3)
    counter = iter(range(size, size + BATCH * (batches + 1)))

    def one(_: int) -> None:
        assert coll.find_one({"_id": rng.choice(ids)}) is not None

    def update_id(_: int) -> None:
        r = coll.update_one({"_id": rng.choice(ids)}, {"$set": {"fields.city": "Oslo"}})
        assert r.matched_count == 1

    def update_versioned(_: int) -> None:
        r = coll.update_one(
            {"_id": next(fresh), "_v": 1}, {"$set": {"fields.city": "Oslo"}, "$inc": {"_v": 1}}
        )
        assert r.matched_count == 1

    def update_fenced(_: int) -> None:
        r = coll.update_one(
            {"_id": next(fresh), "_v": 1, "_fence.p1": {"$not": {"$gt": 3}}},
            {"$set": {"fields.city": "Oslo"}, "$inc": {"_v": 1}},
        )
        assert r.matched_count == 1

    def find_in(_: int) -> None:
        assert len(coll.find({"_id": {"$in": rng.sample(ids, BATCH)}}).to_list()) == BATCH

    def insert_batch(_: int) -> None:
        coll.insert_many([profile(next(counter), now) for _ in range(BATCH)], ordered=False)

    def upsert_existing(_: int) -> None:
        ops = [
            UpdateOne({"_id": i}, {"$set": {"fields.age": 31, "updated_at": now}}, upsert=True)
            for i in rng.sample(ids, BATCH)
        ]
        assert coll.bulk_write(ops, ordered=False).matched_count == BATCH

    def upsert_new(_: int) -> None:
        ops = [
            UpdateOne({"_id": ObjectId()}, {"$set": {"db_id": 10, "fields.age": 30}}, upsert=True)
            for _ in range(BATCH)
        ]
        assert coll.bulk_write(ops, ordered=False).upserted_count == BATCH

    def dotted(_: int) -> None:
        n = rng.randrange(size)
        assert len(coll.find({"fields.loyalty_id": f"L{n}"}).to_list()) == 1

    def dotted_indexed(_: int) -> None:  # the worker's `matching` shape, on its compound index
        n = rng.randrange(size)
        found = coll.find({"db_id": 10, "fields.phones": f"+47{n:08d}"}, {"_id": 1}).limit(2)
        assert len(found.to_list()) == 1

    def count(_: int) -> None:
        coll.count_documents({"account_id": 2})

    return {
        "fill: insert_many of 1000s, seconds": fill,
        "find_one({_id})": timed(repeat, one),
        "update_one({_id}, $set)": timed(repeat, update_id),
        "update_one({_id, _v}, $set+$inc)": timed(repeat, update_versioned),
        "update_one({_id, _v, _fence $not $gt}, $set+$inc)": timed(repeat, update_fenced),
        "find({_id: {$in: 256}})": timed(batches, find_in),
        "insert_many(256)": timed(batches, insert_batch),
        "bulk 256 upserts by _id, existing": timed(batches, upsert_existing),
        "bulk 256 upserts by _id, new": timed(batches, upsert_new),
        'find({"fields.loyalty_id": v})': timed(repeat, dotted),
        'find({db_id, "fields.phones": v}) (indexed)': timed(repeat, dotted_indexed),
        "count_documents({account_id})": timed(batches, count),
    }


def semantics(client: MongoClient[dict[str, Any]]) -> list[str]:
    coll = client[DATABASE]["checks"]
    coll.drop()
    out: list[str] = []
    coll.insert_one({"_id": "k1", "v": 1})
    try:
        coll.insert_one({"_id": "k1", "v": 2})
        out.append("duplicate insert_one: NOT rejected")
    except DuplicateKeyError as exc:
        out.append(f"duplicate insert_one: DuplicateKeyError code {exc.code}")
    try:
        coll.bulk_write([InsertOne({"_id": "k2"}), InsertOne({"_id": "k1"})], ordered=False)
        out.append("duplicate in unordered bulk: NOT rejected")
    except BulkWriteError as exc:
        errors = [(e["index"], e["code"]) for e in exc.details["writeErrors"]]
        inserted = exc.details.get("nInserted")
        out.append(
            f"duplicate in unordered bulk: writeErrors (index, code) {errors}, nInserted {inserted}"
        )
    coll.drop()
    docs: list[dict[str, Any]] = [
        {"_id": n, "account_id": (n >= 5) + (n >= 15), "amount": n, "kind": "a" if n % 2 else "b"}
        for n in range(30)
    ]
    coll.insert_many(docs)
    chosen = [doc for doc in docs if doc["kind"] == "a"]
    totals = {k: sum(d["amount"] for d in chosen if d["account_id"] == k) for k in range(3)}
    counts = {k: sum(1 for d in chosen if d["account_id"] == k) for k in range(3)}
    top = sorted(totals, key=lambda k: -totals[k])[:2]
    match: dict[str, Any] = {"$match": {"kind": "a"}}
    tail: list[dict[str, Any]] = [{"$sort": {"total": -1}}, {"$limit": 2}]
    cases: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        (
            "$match/$group($sum: field)/$sort/$limit",
            {"_id": "$account_id", "total": {"$sum": "$amount"}},
            [{"_id": k, "total": totals[k]} for k in top],
        ),
        (
            "$match/$group($sum: 1)/$sort/$limit",
            {"_id": "$account_id", "total": {"$sum": 1}},
            [{"_id": k, "total": counts[k]} for k in sorted(counts, key=lambda k: -counts[k])[:2]],
        ),
        (
            "$match/$group(two accumulators)/$sort/$limit",
            {"_id": "$account_id", "total": {"$sum": "$amount"}, "n": {"$sum": 1}},
            [{"_id": k, "total": totals[k], "n": counts[k]} for k in top],
        ),
    ]
    for name, group, expected in cases:
        got = list(coll.aggregate([match, {"$group": group}, *tail]))
        verdict = "correct" if got == expected else f"WRONG, expected {expected}"
        out.append(f"aggregate {name}: {verdict}; got {got}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    client: MongoClient[dict[str, Any]] = MongoClient(
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for size in sizes:
        results[size] = measure(client, size, args.repeat)
        print(f"size {size}: done", flush=True)
    names = list(results[sizes[0]])
    width = max(len(name) for name in names)
    print(f"{'ms per operation':<{width}} | " + " | ".join(f"{s:>8}" for s in sizes))
    for name in names:
        print(f"{name:<{width}} | " + " | ".join(f"{results[s][name]:8.1f}" for s in sizes))
    for line in semantics(client):
        print(line)
    client.drop_database(DATABASE)
    client.close()


if __name__ == "__main__":
    main()
