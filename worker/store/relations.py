"""Relations in MongoDB: documents keyed by `relation_id`, claims keyed by (type, A, B).

A relation's natural key is claimed in `relation_keys` (an insert keyed by `_id`), so two
processes creating the same relation end up with one. Ids come from blocks reserved by
inserting `{_id: block}` into `relation_id_blocks`: race-free across processes, and one insert
per hundred relations. Writes go through the write protocol (`writes.py`); a removal leaves a
tombstone (`removed_at`, its watermark kept) until the sweep, so a command that wrote the
relation before it was removed is still known to have landed. Reads skip tombstones.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import DeleteOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from worker.domain.shared.ports import RelationFilter, WriteStatus
from worker.domain.shared.relations import Relation, RelationWrite
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import Fence
from worker.store.inbox import MongoInbox, Target
from worker.store.writes import Insert, Planned, Stamp, Update, WriteProtocol, stamp_of

RELATIONS: Final = "relations"
CLAIMS = "relation_keys"
ID_BLOCKS = "relation_id_blocks"
ID_BLOCK_SIZE = 100
REMOVED_AT = "removed_at"
"""A tombstone's field: when the relation was removed."""


class RelationRepository:
    """Implements `worker.domain.shared.ports.RelationStore`."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], inbox: MongoInbox) -> None:
        self._inbox = inbox
        self._relations = db[RELATIONS]
        self._claims = db[CLAIMS]
        self._blocks = db[ID_BLOCKS]
        self._free_ids: list[int] = []
        self._allocating = asyncio.Lock()
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> RelationRepository:
        """This repository for the owner of one partition: its writes carry `fence`. Copies
        share the relation ids reserved so far (one process, one allocator)."""
        fenced = copy.copy(self)
        fenced._fence, fenced._inbox = fence, self._inbox.fenced(fence)
        return fenced

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._relations.create_index([("rel_id", 1), ("profile_id_a", 1)])
            await self._relations.create_index([("profile_id_b", 1)])

    async def relations_by_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Relation], dict[str, int]]:
        """The relations with these natural keys, and the id each claimed key points at (a
        claim without its relation is a creation cut short, to be finished under that id; a
        claim of a removed relation is free)."""
        if not keys:
            return {}, {}
        async with translated():
            claims = await self._claims.find({"_id": {"$in": list(keys)}}).to_list()
            claimed = {doc["_id"]: int(doc["relation_id"]) for doc in claims}
            ids = sorted(set(claimed.values()))
            docs = await self._relations.find({"_id": {"$in": ids}}).to_list()
        removed = {doc["_id"] for doc in docs if REMOVED_AT in doc}
        relations = {doc["_id"]: _relation(doc) for doc in docs if REMOVED_AT not in doc}
        found = {key: relations[rid] for key, rid in claimed.items() if rid in relations}
        live = {key: rid for key, rid in claimed.items() if rid not in removed}
        return {key: relation for key, relation in found.items() if relation.key == key}, live

    async def relations_by_ids(self, relation_ids: Sequence[int]) -> dict[int, Relation]:
        if not relation_ids:
            return {}
        async with translated():
            docs = await self._relations.find({"_id": {"$in": list(relation_ids)}}).to_list()
        return {doc["_id"]: _relation(doc) for doc in docs if REMOVED_AT not in doc}

    async def new_relation_ids(self, count: int) -> list[int]:
        """`count` fresh relation ids, from blocks this process reserved. The list of free ids
        is changed in place: every fenced copy of this repository shares it."""
        async with self._allocating:
            while len(self._free_ids) < count:
                block = await self._reserve_block()
                start = block * ID_BLOCK_SIZE + 1
                self._free_ids.extend(range(start, start + ID_BLOCK_SIZE))
            taken = self._free_ids[:count]
            del self._free_ids[:count]
        return taken

    async def _reserve_block(self) -> int:
        async with translated():
            while True:
                last = await self._blocks.find({}, {"_id": 1}).sort("_id", -1).limit(1).to_list()
                block = last[0]["_id"] + 1 if last else 0
                try:
                    await self._blocks.insert_one({"_id": block, "at": datetime.now(UTC)})
                    return int(block)
                except DuplicateKeyError:  # another process took it: read again
                    continue

    async def write(self, writes: Sequence[RelationWrite]) -> list[WriteStatus]:
        protocol = WriteProtocol(self._relations, self._inbox, self._fence, self)
        return await protocol.write(writes)

    def planned(self, write: RelationWrite) -> Planned:
        read = None if write.kind == "create" else stamp_of(write.before)
        target = Target(RELATIONS, write.relation.relation_id)
        return Planned(write.command_id, target, write.result, write.events, read)

    def change(self, write: RelationWrite, now: datetime) -> Insert | Update:
        return _change(write, now)

    async def claim(self, writes: Sequence[RelationWrite]) -> list[bool]:
        """Claim the key of every creation; False where the key names another live relation
        (one a removal left claimed, the removal cut short, is taken over)."""
        ok = [True] * len(writes)
        creations = [i for i, write in enumerate(writes) if write.kind == "create"]
        if not creations:
            return ok
        documents = [
            {"_id": writes[i].relation.key, "relation_id": writes[i].relation.relation_id}
            for i in creations
        ]
        try:
            await self._claims.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            contested = [creations[position] for position in sorted(duplicate_indexes(exc))]
            keys = [writes[i].relation.key for i in contested]
            _, owners = await self.relations_by_keys(keys)
            for index in contested:
                ok[index] = await self._take_key(writes[index].relation, owners)
        return ok

    async def _take_key(self, relation: Relation, owners: dict[str, int]) -> bool:
        """Whether a contested key is this relation's: claimed for it already, or freed by a
        removal and now taken over (a conditional update: of two takers one matches)."""
        owner = owners.get(relation.key)
        if owner is not None:
            return owner == relation.relation_id
        claim = await self._claims.find_one({"_id": relation.key})
        if claim is None:
            return False  # released meanwhile: plan again
        taken = await self._claims.update_one(
            {"_id": relation.key, "relation_id": claim["relation_id"]},
            {"$set": {"relation_id": relation.relation_id}},
        )
        return taken.matched_count == 1

    async def release(self, applied: Sequence[RelationWrite]) -> None:
        """A removed relation's key is free again."""
        releases = [
            DeleteOne({"_id": w.relation.key, "relation_id": w.relation.relation_id})
            for w in applied
            if w.kind == "delete"
        ]
        if releases:
            await self._claims.bulk_write(releases, ordered=False)

    async def forget_removed_before(self, moment: datetime) -> None:
        """Tombstones matter only until the commands that wrote their relations are done."""
        async with translated():
            await self._relations.delete_many({REMOVED_AT: {"$lt": moment}})

    async def count_relations(self, where: RelationFilter) -> int:
        async with translated():
            return await self._relations.count_documents(_query(where))

    async def relation_page(
        self, where: RelationFilter, *, by_priority: bool, after: tuple[int, int] | None, limit: int
    ) -> list[Relation]:
        """Up to `limit` relations after the cursor: by relation id, or by priority descending
        (ties by relation id), so every page continues exactly where the last one ended."""
        query = _query(where)
        if by_priority:
            order = [("priority", -1), ("_id", 1)]
            if after is not None:
                priority, relation_id = after
                beyond = [
                    {"priority": {"$lt": priority}},
                    {"priority": priority, "_id": {"$gt": relation_id}},
                ]
                # `$and`: the filter may have an `$or` of its own (a contact on either side).
                query = {"$and": [query, {"$or": beyond}]}
        else:
            order = [("_id", 1)]
            if after is not None:
                query["_id"] = {"$gt": after[1]}
        async with translated():
            docs = await self._relations.find(query).sort(order).limit(limit).to_list()
        return [_relation(doc) for doc in docs]

    async def property_sum(self, where: RelationFilter, name: str) -> int | float:
        """The sum of a numeric property, by a `$group`."""
        pipeline: list[dict[str, Any]] = [
            {"$match": _query(where)},
            {"$group": {"_id": None, "sum": {"$sum": f"$props.{name}"}}},
        ]
        async with translated():
            rows = await (await self._relations.aggregate(pipeline)).to_list()
        return rows[0]["sum"] if rows else 0

    async def top_relations(self, where: RelationFilter, name: str, limit: int) -> list[Relation]:
        """The relations with the highest values of a numeric property."""
        query = _query(replace(where, having=name))
        async with translated():
            docs = (
                await self._relations.find(query)
                .sort([(f"props.{name}", -1), ("_id", 1)])
                .limit(limit)
                .to_list()
            )
        return [_relation(doc) for doc in docs]


def _query(where: RelationFilter) -> dict[str, Any]:
    query: dict[str, Any] = {"account_id": where.account_id, REMOVED_AT: {"$exists": False}}
    if where.rel_id is not None:
        query["rel_id"] = where.rel_id
    if where.profile_id_a is not None:
        query["profile_id_a"] = where.profile_id_a
    if where.contact is not None:
        query["$or"] = [{"profile_id_a": where.contact}, {"profile_id_b": where.contact}]
    if where.having is not None:
        query[f"props.{where.having}"] = {"$exists": True}
    return query


def _relation(doc: dict[str, Any]) -> Relation:
    return Relation(
        relation_id=int(doc["_id"]),
        rel_id=doc["rel_id"],
        account_id=doc["account_id"],
        db_a=doc["db_a"],
        db_b=doc["db_b"],
        profile_id_a=doc["profile_id_a"],
        profile_id_b=doc["profile_id_b"],
        props=doc.get("props") or {},
        relation_to_a=doc.get("relation_to_a"),
        relation_to_b=doc.get("relation_to_b"),
        priority=doc.get("priority", 50),
        stamp=Stamp.of(doc),
    )


def _change(write: RelationWrite, now: datetime) -> Insert | Update:
    """What one planned write does to its relation. Property names were checked against the
    relation type. A removal leaves a tombstone."""
    relation = write.relation
    if write.kind == "delete":
        return Update({"$set": {REMOVED_AT: now}})
    values = {
        "props": relation.props,
        "relation_to_a": relation.relation_to_a,
        "relation_to_b": relation.relation_to_b,
        "priority": relation.priority,
        "updated_at": now,
    }
    if write.kind == "update":
        return Update({"$set": values})
    return Insert(
        {
            "_id": relation.relation_id,
            "key": relation.key,
            "rel_id": relation.rel_id,
            "account_id": relation.account_id,
            "db_a": relation.db_a,
            "db_b": relation.db_b,
            "profile_id_a": relation.profile_id_a,
            "profile_id_b": relation.profile_id_b,
            **values,
            "created_at": now,
        }
    )
