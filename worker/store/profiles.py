"""Profiles and their unique-value claims in MongoDB.

Uniqueness is enforced with claim documents keyed by `_id` (`profile_keys`): an insert of a
taken key fails, so of two profiles wanting one email exactly one gets it. Profile writes go
through the write protocol (`writes.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bson import ObjectId
from pymongo import DeleteOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.domain.shared.ports import WriteStatus
from worker.domain.shared.profiles import Profile, ProfileWrite
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import Fence
from worker.store.inbox import MongoInbox, Target
from worker.store.writes import Insert, Planned, Stamp, Update, WriteProtocol, stamp_of

PROFILES: Final = "profiles"
CLAIMS = "profile_keys"


class ProfileRepository:
    """Implements `worker.domain.shared.ports.ProfileStore`."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], inbox: MongoInbox) -> None:
        self._inbox = inbox
        self._profiles = db[PROFILES]
        self._claims = db[CLAIMS]
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
            docs = await self._profiles.find({"_id": {"$in": ids}, "db_id": db_id}).to_list()
        return {str(doc["_id"]): _profile(doc) for doc in docs}

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
        protocol = WriteProtocol(self._profiles, self._inbox, self._fence, self)
        return await protocol.write(writes)

    def change(self, write: ProfileWrite, now: datetime) -> Insert | Update:
        return _change(write, now)

    def planned(self, write: ProfileWrite) -> Planned:
        read = None if write.create else stamp_of(write.before)
        target = Target(PROFILES, write.profile_id)
        return Planned(write.command_id, target, write.result, write.events, read)

    async def claim(self, writes: Sequence[ProfileWrite]) -> list[bool]:
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
        # Taking over a stale claim is a conditional update: of two takeovers one matches.
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

    async def release(self, applied: Sequence[ProfileWrite]) -> None:
        releases = [
            DeleteOne({"_id": key, "profile_id": write.profile_id})
            for write in applied
            for key in write.releases
        ]
        if releases:
            await self._claims.bulk_write(releases, ordered=False)


def _profile(doc: dict[str, Any]) -> Profile:
    return Profile(
        profile_id=str(doc["_id"]),
        db_id=doc["db_id"],
        account_id=doc["account_id"],
        fields=doc.get("fields") or {},
        subscriptions=doc.get("subs") or {},
        stamp=Stamp.of(doc),
    )


def _change(write: ProfileWrite, now: datetime) -> Insert | Update:
    """What one planned write does to its profile. Field names were checked by the schema."""
    changes = write.changes
    if write.create:
        fields = {**changes.set, **changes.inc, **changes.add_tags}
        return Insert(
            {
                "_id": ObjectId(write.profile_id),
                "db_id": write.db_id,
                "account_id": write.account_id,
                "fields": fields,
                "subs": write.subscriptions,
                "created_at": now,
                "updated_at": now,
            }
        )
    update: dict[str, Any] = {
        "$set": {
            **{f"fields.{name}": value for name, value in changes.set.items()},
            **{f"subs.{slot}": sub for slot, sub in write.subscriptions.items()},
            "updated_at": now,
        },
    }
    if changes.inc:
        update["$inc"] = {f"fields.{name}": delta for name, delta in changes.inc.items()}
    if changes.unset:
        update["$unset"] = {f"fields.{name}": "" for name in changes.unset}
    if changes.add_tags:
        update["$addToSet"] = {
            f"fields.{name}": {"$each": tags} for name, tags in changes.add_tags.items()
        }
    if changes.remove_tags:
        update["$pullAll"] = {f"fields.{name}": tags for name, tags in changes.remove_tags.items()}
    return Update(update)
