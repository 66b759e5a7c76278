"""Relations in MongoDB: documents keyed by `relation_id`, claims keyed by (type, A, B).

A relation's natural key is claimed in `relation_keys` (an insert keyed by `_id`, atomic on
every server), so two processes creating the same relation end up with one. Ids come from
blocks reserved by inserting `{_id: block}` into `relation_id_blocks`: race-free across
processes, and one insert per hundred relations. Updates and deletes reserve the relation's
next version first (`worker.store.revisions`).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from worker.domain.shared.ports import RelationFilter, WriteStatus
from worker.domain.shared.relations import Relation, RelationWrite
from worker.store.bulk import all_touched, bulk_write_chunked
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import FIELD as FENCE_FIELD
from worker.store.fence import Fence, fence_stamp, fenced_filter, overtaken
from worker.store.inbox import MongoInbox, WriteAhead
from worker.store.markers import (
    Stamp,
    Target,
    landing,
    marker_keep_ms,
    marker_of,
    marker_time,
    removed_from,
    stamp_of,
    unless_landed_before,
)
from worker.store.revisions import Revisions
from worker.store.server import ServerTraits

RELATIONS: Final = "relations"
CLAIMS = "relation_keys"
REVISIONS = "relation_revisions"
REMOVED = removed_from(RELATIONS)
ID_BLOCKS = "relation_id_blocks"
ID_BLOCK_SIZE = 100


class RelationRepository:
    """Implements `worker.domain.shared.ports.RelationStore`."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], inbox: MongoInbox, server: ServerTraits
    ) -> None:
        self._inbox = inbox
        self._server = server
        self._relations = db[RELATIONS]
        self._claims = db[CLAIMS]
        self._revisions = Revisions(db[REVISIONS], inbox.lease_seconds)
        self._removed = db[REMOVED]
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
            await self._revisions.ensure_indexes()
            await self._removed.create_index([("at", 1)])

    async def relations_by_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Relation], dict[str, int]]:
        """The relations with these natural keys, and the id each claimed key points at (a
        claim without its relation is a creation cut short, to be finished under that id)."""
        if not keys:
            return {}, {}
        async with translated():
            claims = await self._claims.find({"_id": {"$in": list(keys)}}).to_list()
        claimed = {doc["_id"]: int(doc["relation_id"]) for doc in claims}
        relations = await self.relations_by_ids(sorted(set(claimed.values())))
        found = {key: relations[rid] for key, rid in claimed.items() if rid in relations}
        return {key: relation for key, relation in found.items() if relation.key == key}, claimed

    async def relations_by_ids(self, relation_ids: Sequence[int]) -> dict[int, Relation]:
        if not relation_ids:
            return {}
        async with translated():
            docs = await self._relations.find({"_id": {"$in": list(relation_ids)}}).to_list()
        return {doc["_id"]: _relation(doc) for doc in docs}

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
        return await unless_landed_before(writes, self._write_fresh, self._fence)

    async def _write_fresh(self, writes: list[RelationWrite]) -> list[WriteStatus]:
        """Answers ahead, claims for creations, revisions for the rest, then the writes.

        A deletion keeps the relation's markers (see `removed_from`) and releases its claim
        before removing the document, so a creation racing with it can never adopt the id
        being removed.
        """
        markers = [marker_of(write.command_id) for write in writes]
        async with translated():
            now = datetime.now(UTC)
            await self._inbox.write_ahead(
                [
                    WriteAhead(w.command_id, w.result, w.events, _target(w))
                    for w in writes
                    if w.command_id is not None
                ]
            )
            eligible = await self._claim(writes)
            changes = [i for i, w in enumerate(writes) if eligible[i] and w.kind != "create"]
            reserved = await self._revisions.reserve(
                [
                    (writes[i].relation.relation_id, stamp_of(writes[i].before).version)
                    for i in changes
                ],
                now,
            )
            for index, ok in zip(changes, reserved, strict=True):
                eligible[index] = ok
            deletes = [
                w for w, ok in zip(writes, eligible, strict=True) if ok and w.kind == "delete"
            ]
            await self._keep_markers(deletes, now)
            await self._release(deletes)
            fence = self._fence if self._server.fences_in_filters else None
            keep_ms = marker_keep_ms(self._inbox.lease_seconds)
            operations = [
                _operation(w, marker, now, keep_ms, self._fence, fence)
                for w, marker, ok in zip(writes, markers, eligible, strict=True)
                if ok
            ]
            all_applied = await all_touched(
                self._relations, operations, self._server.bulk_chunk
            ) and all(eligible)
            if all_applied:
                return ["applied"] * len(writes)
            statuses = await self._landed(writes, markers, eligible)
            await self._restore_claims(
                [
                    w
                    for w, status, ok in zip(writes, statuses, eligible, strict=True)
                    if status == "fenced" and ok and w.kind == "delete"
                ]
            )
            await self._revisions.release(
                [
                    (w.relation.relation_id, stamp_of(w.before).version)
                    for w, status, ok in zip(writes, statuses, eligible, strict=True)
                    if status == "fenced" and ok and w.kind != "create"
                ]
            )
            return statuses

    async def _claim(self, writes: Sequence[RelationWrite]) -> list[bool]:
        """Claim the key of every creation; False where the key names another relation."""
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
            _, owners = await self.relations_by_keys([writes[i].relation.key for i in contested])
            for index in contested:
                relation = writes[index].relation
                ok[index] = owners.get(relation.key) == relation.relation_id
        return ok

    async def _keep_markers(self, deletes: Sequence[RelationWrite], now: datetime) -> None:
        """The markers of each relation about to be removed, with the removal's own."""
        if deletes:
            await bulk_write_chunked(
                self._removed,
                [
                    ReplaceOne(
                        {"_id": w.relation.relation_id},
                        {
                            "_applied": {
                                **stamp_of(w.before).markers,
                                marker_of(w.command_id): marker_time(now),
                            },
                            "at": now,
                        },
                        upsert=True,
                    )
                    for w in deletes
                ],
                self._server.bulk_chunk,
            )

    async def _release(self, deletes: Sequence[RelationWrite]) -> None:
        if deletes:
            await bulk_write_chunked(
                self._claims,
                [
                    DeleteOne({"_id": w.relation.key, "relation_id": w.relation.relation_id})
                    for w in deletes
                ],
                self._server.bulk_chunk,
            )

    async def _restore_claims(self, deletes: Sequence[RelationWrite]) -> None:
        """A fenced deletion released its relation's key before its delete was refused (a
        writer stalled past its revision's lease): the relation is still there, so its key
        is claimed for it again."""
        if not deletes:
            return
        documents = [
            {"_id": w.relation.key, "relation_id": w.relation.relation_id} for w in deletes
        ]
        try:
            await self._claims.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            duplicate_indexes(exc)  # still claimed: nothing to restore

    async def _landed(
        self, writes: Sequence[RelationWrite], markers: list[str], attempted: list[bool]
    ) -> list[WriteStatus]:
        """Deletions landed if the relation is gone; the rest if it carries their marker."""
        ids = [write.relation.relation_id for write in writes]
        docs = await self._relations.find({"_id": {"$in": ids}}).to_list()
        present = {doc["_id"]: doc for doc in docs}
        statuses: list[WriteStatus] = []
        for write, marker, sent in zip(writes, markers, attempted, strict=True):
            doc = present.get(write.relation.relation_id)
            later_owner = overtaken(self._fence, doc)
            if write.kind == "delete":
                statuses.append(landing(sent, doc is None, later_owner))
            else:
                marked = doc is not None and marker in (doc.get("_applied") or {})
                statuses.append(landing(sent, marked, later_owner))
        return statuses

    async def forget_revisions_before(self, moment: datetime) -> None:
        """Revisions and the markers of removed relations: both matter only until the commands
        that left them are done."""
        async with translated():
            await self._revisions.forget_before(moment)
            await self._removed.delete_many({"at": {"$lt": moment}})

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
        """The sum of a numeric property, by a `$group` with that one accumulator: FerretDB
        1.24 computes only the first accumulator of a `$group` and answers 0 for the others."""
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
    query: dict[str, Any] = {"account_id": where.account_id}
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


def _target(write: RelationWrite) -> Target:
    return Target(RELATIONS, write.relation.relation_id, removes=write.kind == "delete")


def _operation(
    write: RelationWrite,
    marker: str,
    now: datetime,
    keep_ms: int,
    fence: Fence | None,
    filter_fence: Fence | None,
) -> InsertOne[dict[str, Any]] | UpdateOne | DeleteOne:
    """The MongoDB operation for one planned write. Property names were checked against the
    relation type; the writer holds the relation's next version, so `_id` is filter enough,
    with the writer's `filter_fence` (see `fence.py`; none on a server that would scan for
    it). Every write leaves `fence`'s epoch."""
    relation = write.relation
    condition = fenced_filter({"_id": relation.relation_id}, filter_fence)
    if write.kind == "delete":
        return DeleteOne(condition)
    values = {
        "props": relation.props,
        "relation_to_a": relation.relation_to_a,
        "relation_to_b": relation.relation_to_b,
        "priority": relation.priority,
        "updated_at": now,
    }
    if write.kind == "create":
        return InsertOne(
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
                "_v": 1,
                "_applied": {marker: marker_time(now)},
                **({FENCE_FIELD: {fence.key: fence.epoch}} if fence else {}),
                "created_at": now,
            }
        )
    update: dict[str, Any] = {
        "$set": {**values, f"_applied.{marker}": marker_time(now), **fence_stamp(fence)},
        "$inc": {"_v": 1},
    }
    pruned = stamp_of(write.before).pruned(marker_time(now), keep_ms)
    if pruned:
        update["$unset"] = {f"_applied.{name}": "" for name in pruned}
    return UpdateOne(condition, update)
