"""Profiles and their unique-value claims in MongoDB.

Uniqueness is enforced with claim documents keyed by `_id` (`profile_keys`), and each profile
version is reserved by inserting a revision document (`profile_revisions`) before the update:
inserts keyed by `_id` are atomic on MongoDB and on FerretDB alike, which conditional updates
are not on FerretDB. Every write leaves the command's marker on the profile, so a new owner of
the command after a crash can tell whether it landed (`worker.store.inbox`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.domain.shared.ports import WriteStatus
from worker.domain.shared.profiles import Profile, ProfileWrite
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
    stamp_of,
    unless_landed_before,
)
from worker.store.revisions import Revisions
from worker.store.server import ServerTraits

PROFILES: Final = "profiles"
CLAIMS = "profile_keys"
REVISIONS = "profile_revisions"


class ProfileRepository:
    """Implements `worker.domain.shared.ports.ProfileStore`."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], inbox: MongoInbox, server: ServerTraits
    ) -> None:
        self._inbox = inbox
        self._server = server
        self._profiles = db[PROFILES]
        self._claims = db[CLAIMS]
        self._revisions = Revisions(db[REVISIONS], inbox.lease_seconds)
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> ProfileRepository:
        """This repository for the owner of one partition: its writes carry `fence`."""
        fenced = copy.copy(self)
        fenced._fence, fenced._inbox = fence, self._inbox.fenced(fence)
        return fenced

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._profiles.create_index([("db_id", 1), ("fields.phones", 1)])
            await self._profiles.create_index([("account_id", 1)])
            await self._revisions.ensure_indexes()

    async def owners(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        async with translated():
            docs = await self._claims.find({"_id": {"$in": list(keys)}}).to_list()
        return {doc["_id"]: doc["profile_id"] for doc in docs}

    async def profiles(self, db_id: int, profile_ids: Sequence[str]) -> dict[str, Profile]:
        if not profile_ids:
            return {}
        ids = [ObjectId(profile_id) for profile_id in profile_ids]
        async with translated():
            # `_id` alone: a compound filter makes mongo-java-server scan (bench/RESULTS.md).
            docs = await self._profiles.find({"_id": {"$in": ids}}).to_list()
        return {str(doc["_id"]): _profile(doc) for doc in docs if doc["db_id"] == db_id}

    async def matching(self, db_id: int, field: str, value: Any, *, all_of: bool) -> list[str]:
        condition = {"$all": value} if all_of else value
        async with translated():
            docs = (
                await self._profiles.find(
                    {"db_id": db_id, f"fields.{field}": condition}, {"_id": 1}
                )
                .limit(2)
                .to_list()
            )
        return [str(doc["_id"]) for doc in docs]

    async def profile_account(self, profile_id: str) -> int | None:
        async with translated():
            doc = await self._profiles.find_one({"_id": ObjectId(profile_id)}, {"account_id": 1})
        return None if doc is None else int(doc["account_id"])

    async def count(self, account_id: int) -> int:
        async with translated():
            return await self._profiles.count_documents({"account_id": account_id})

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        return await unless_landed_before(writes, self._write_fresh, self._fence)

    async def _write_fresh(self, writes: list[ProfileWrite]) -> list[WriteStatus]:
        """Answers ahead, then claims, revisions, the profile writes, and which markers landed.

        Each answer is written ahead into the inbox before its write, so an owner taking the
        command over after a crash can answer what landed.
        """
        markers = [marker_of(write.command_id) for write in writes]
        async with translated():
            now = datetime.now(UTC)
            await self._inbox.write_ahead(
                [
                    WriteAhead(w.command_id, w.result, w.events, Target(PROFILES, w.profile_id))
                    for w in writes
                    if w.command_id is not None
                ]
            )
            claimed = await self._claim(writes)
            eligible = await self._take_revisions(writes, claimed, now)
            filter_fence = self._fence if self._server.fences_in_filters else None
            keep_ms = marker_keep_ms(self._inbox.lease_seconds)
            operations = [
                _operation(write, marker, now, keep_ms, self._fence, filter_fence)
                for write, marker, ok in zip(writes, markers, eligible, strict=True)
                if ok
            ]
            all_applied = await all_touched(
                self._profiles, operations, self._server.bulk_chunk
            ) and all(eligible)
            # When every operation matched or inserted, every marker is known to have landed
            # without reading the profiles back.
            statuses: list[WriteStatus] = (
                ["applied"] * len(writes)
                if all_applied
                else await self._landed(writes, markers, eligible)
            )
            await self._release(
                [w for w, status in zip(writes, statuses, strict=True) if status == "applied"]
            )
            await self._revisions.release(
                [
                    (w.profile_id, stamp_of(w.before).version)
                    for w, status, ok in zip(writes, statuses, eligible, strict=True)
                    if status == "fenced" and ok and w.before is not None
                ]
            )
        return statuses

    async def _take_revisions(
        self, writes: Sequence[ProfileWrite], claimed: list[bool], now: datetime
    ) -> list[bool]:
        """Reserve the next version of every updated profile (see `worker.store.revisions`)."""
        updates = [i for i, write in enumerate(writes) if claimed[i] and write.before]
        reserved = await self._revisions.reserve(
            [(writes[i].profile_id, stamp_of(writes[i].before).version) for i in updates], now
        )
        taken = list(claimed)
        for index, ok in zip(updates, reserved, strict=True):
            taken[index] = ok
        return taken

    async def forget_revisions_before(self, moment: datetime) -> None:
        async with translated():
            await self._revisions.forget_before(moment)

    async def _claim(self, writes: Sequence[ProfileWrite]) -> list[bool]:
        """Take each write's unique keys; False for a write that lost one to another profile."""
        claims = [
            (index, key, stale_owner)
            for index, write in enumerate(writes)
            for key, stale_owner in write.claims.items()
        ]
        inserts = [(index, key) for index, key, owner in claims if owner is None]
        takeovers = [(index, key, owner) for index, key, owner in claims if owner is not None]
        contested: list[tuple[int, str]] = []
        if inserts:
            documents = [{"_id": key, "profile_id": writes[i].profile_id} for i, key in inserts]
            try:
                await self._claims.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                contested += [inserts[position] for position in duplicate_indexes(exc)]
        # Taking over a stale claim is a conditional update; on FerretDB two concurrent takeovers
        # of the same stale claim could both report a match (no isolation). Stale claims only
        # arise from changed unique values or crashes, so this race stays narrow.
        for index, key, stale_owner in takeovers:
            result = await self._claims.update_one(
                {"_id": key, "profile_id": stale_owner},
                {"$set": {"profile_id": writes[index].profile_id}},
            )
            if result.matched_count == 0:
                contested.append((index, key))
        ok = [True] * len(writes)
        if contested:
            owners = await self.owners([key for _, key in contested])
            for index, key in contested:
                if owners.get(key) != writes[index].profile_id:
                    ok[index] = False
        return ok

    async def _landed(
        self, writes: Sequence[ProfileWrite], markers: list[str], attempted: list[bool]
    ) -> list[WriteStatus]:
        ids = [ObjectId(write.profile_id) for write in writes]
        projection = {"_applied": 1, FENCE_FIELD: 1}
        docs = await self._profiles.find({"_id": {"$in": ids}}, projection).to_list()
        found = {str(doc["_id"]): doc for doc in docs}
        statuses = []
        for write, marker, sent in zip(writes, markers, attempted, strict=True):
            doc = found.get(write.profile_id)
            marked = marker in ((doc or {}).get("_applied") or {})
            statuses.append(landing(sent, marked, overtaken(self._fence, doc)))
        return statuses

    async def _release(self, writes: Sequence[ProfileWrite]) -> None:
        releases = [
            DeleteOne({"_id": key, "profile_id": write.profile_id})
            for write in writes
            for key in write.releases
        ]
        if releases:
            await bulk_write_chunked(self._claims, releases, self._server.bulk_chunk)


def _profile(doc: dict[str, Any]) -> Profile:
    return Profile(
        profile_id=str(doc["_id"]),
        db_id=doc["db_id"],
        account_id=doc["account_id"],
        fields=doc.get("fields") or {},
        subscriptions=doc.get("subs") or {},
        stamp=Stamp.of(doc),
    )


def _operation(
    write: ProfileWrite,
    marker: str,
    now: datetime,
    keep_ms: int,
    fence: Fence | None,
    filter_fence: Fence | None,
) -> InsertOne[dict[str, Any]] | UpdateOne:
    """The MongoDB operation for one planned write. Field names were checked by the schema.

    An update filters on `_id` (and its writer's `filter_fence`, see `fence.py`; none on a
    server that would scan for it; every write leaves `fence`'s epoch): its writer holds the
    revision `expected_version + 1`, so no other writer can change the profile between its
    planning read and this write, and a filter of `_id` alone costs a quarter of a compound
    one on FerretDB (bench/RESULTS.md).
    """
    changes, marked_at = write.changes, marker_time(now)
    if write.create:
        fields = {**changes.set, **changes.inc, **changes.add_tags}
        return InsertOne(
            {
                "_id": ObjectId(write.profile_id),
                "db_id": write.db_id,
                "account_id": write.account_id,
                "fields": fields,
                "_v": 1,
                "_applied": {marker: marked_at},
                **({FENCE_FIELD: {fence.key: fence.epoch}} if fence else {}),
                "subs": write.subscriptions,
                "created_at": now,
                "updated_at": now,
            }
        )
    condition = fenced_filter({"_id": ObjectId(write.profile_id)}, filter_fence)
    update: dict[str, Any] = {
        "$set": {
            **{f"fields.{name}": value for name, value in changes.set.items()},
            **{f"subs.{slot}": sub for slot, sub in write.subscriptions.items()},
            f"_applied.{marker}": marked_at,
            **fence_stamp(fence),
            "updated_at": now,
        },
        "$inc": {**{f"fields.{name}": delta for name, delta in changes.inc.items()}, "_v": 1},
    }
    unset = [f"fields.{name}" for name in changes.unset]
    unset += [f"_applied.{name}" for name in stamp_of(write.before).pruned(marked_at, keep_ms)]
    if unset:
        update["$unset"] = dict.fromkeys(unset, "")
    if changes.add_tags:
        update["$addToSet"] = {
            f"fields.{name}": {"$each": tags} for name, tags in changes.add_tags.items()
        }
    if changes.remove_tags:
        update["$pullAll"] = {f"fields.{name}": tags for name, tags in changes.remove_tags.items()}
    return UpdateOne(condition, update)
