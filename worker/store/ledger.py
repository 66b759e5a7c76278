"""The command ledger (SPEC §9's dedup inbox): who decides each command, and its answer.

A command id is claimed by inserting `{_id: id, owner, lease_until}` into `inbox`: inserts keyed by
`_id` are atomic on MongoDB and FerretDB alike, so of two processes holding copies of one command
exactly one decides it; the other comes back later and gets the answer. An owner that dies leaves
its claim until the lease ends; the next owner then takes it over (through an insert into
`inbox_takeovers`, since FerretDB 1.24 does not isolate conditional updates) and first checks
whether the dead owner's write landed: the decided answer and its target are written ahead into
`inbox_answers` before the write, and the write leaves the command's marker on its document (kept
aside when a later command removes the document). `inbox_done` records answered commands (an insert:
updates cost a scan on FerretDB). FerretDB has no TTL indexes, so old entries are swept.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import Busy, Claim, Recorded, Yours
from worker.store.bulk import bulk_write_chunked
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import FIELD as FENCE_FIELD
from worker.store.fence import Fence, fenced_filter
from worker.store.markers import Target, marker_of, removed_from
from worker.store.server import ServerTraits

CLAIMS = "inbox"
ANSWERS = "inbox_answers"
DONE = "inbox_done"
TAKEOVERS = "inbox_takeovers"


@dataclass(frozen=True)
class WriteAhead:
    """A decided answer and the write it goes with, recorded before the write is made."""

    command_id: str
    result: ResultModel
    events: Sequence[Event]
    target: Target


class MongoLedger:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], lease_seconds: float, server: ServerTraits
    ) -> None:
        self._db = db
        self._server = server
        self._claims = db[CLAIMS]
        self._answers = db[ANSWERS]
        self._done = db[DONE]
        self._takeovers = db[TAKEOVERS]
        self._lease = timedelta(seconds=lease_seconds)
        self.lease_seconds = lease_seconds
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MongoLedger:
        """This ledger for the owner of one partition: the answers it records carry `fence`,
        and never replace one that a later owner of the partition recorded."""
        fenced = copy.copy(self)
        fenced._fence = fence
        return fenced

    async def ensure_indexes(self) -> None:
        async with translated():
            for collection in (self._claims, self._answers, self._done, self._takeovers):
                await collection.create_index([("at", 1)])

    async def claim(self, command_ids: Sequence[str], owner: str) -> dict[str, Claim]:
        if not command_ids:
            return {}
        now = datetime.now(UTC)
        documents = [
            {"_id": command_id, "owner": owner, "lease_until": now + self._lease, "at": now}
            for command_id in command_ids
        ]
        claims: dict[str, Claim] = {command_id: Yours() for command_id in command_ids}
        async with translated():
            try:
                await self._claims.insert_many(documents, ordered=False)
                return claims
            except BulkWriteError as exc:
                taken = [command_ids[position] for position in sorted(duplicate_indexes(exc))]
            claims.update(await self._claimed_before(taken, owner, now))
        return claims

    async def _claimed_before(
        self, command_ids: list[str], owner: str, now: datetime
    ) -> dict[str, Claim]:
        """What each already claimed command means for `owner` now."""
        wanted = {"_id": {"$in": command_ids}}
        done = {doc["_id"] for doc in await self._done.find(wanted, {"_id": 1}).to_list()}
        answers = {doc["_id"]: doc for doc in await self._answers.find(wanted).to_list()}
        holders = {doc["_id"]: doc for doc in await self._claims.find(wanted).to_list()}
        claims: dict[str, Claim] = {}
        for command_id in command_ids:
            answer, holder = answers.get(command_id), holders.get(command_id)
            if command_id in done and answer is not None:
                claims[command_id] = Recorded(answer["result"])
            elif holder is not None and (
                holder["owner"] == owner or await self._take_over(holder, owner, now)
            ):
                claims[command_id] = await self._resumed(command_id, answer)
            else:  # held by a live owner, or swept just now: come back later
                claims[command_id] = Busy()
        return claims

    async def _take_over(self, holder: dict[str, Any], owner: str, now: datetime) -> bool:
        """Take a claim whose lease ended; of several contenders the one whose insert of the
        takeover record succeeds wins.

        The record names its owner and lease, and the claim is updated after it: an owner
        interrupted between the two (killed, cut off, cancelled) leaves a record that is the
        claim's true holder. Its owner resumes from it within its lease; after that lease, the
        next takeover is keyed by it, as it would be had the claim been updated."""
        lease_until = _aware(holder["lease_until"])
        while lease_until <= now:
            takeover = f"{holder['_id']}@{int(lease_until.timestamp() * 1000)}"
            fresh_lease = now + self._lease
            fresh = {"_id": takeover, "owner": owner, "lease_until": fresh_lease, "at": now}
            try:
                await self._takeovers.insert_one(fresh)
                return await self._hold(holder["_id"], owner, fresh_lease)
            except DuplicateKeyError:
                record = await self._takeovers.find_one({"_id": takeover})
            if record is None:  # swept just now: come back later
                return False
            # A record from before records named their owner and lease: its lease ended a
            # lease after it was made.
            lease_until = _aware(record.get("lease_until") or _aware(record["at"]) + self._lease)
            if record.get("owner") == owner and lease_until > now:
                return await self._hold(holder["_id"], owner, lease_until)
        return False

    async def _hold(self, command_id: str, owner: str, lease_until: datetime) -> bool:
        await self._claims.update_one(
            {"_id": command_id}, {"$set": {"owner": owner, "lease_until": lease_until}}
        )
        return True

    async def _resumed(self, command_id: str, answer: dict[str, Any] | None) -> Claim:
        """A claim taken over (or held by this owner before): did the decided write land?"""
        if answer is None or answer.get("target") is None:
            return Recorded(answer["result"], unsent=True) if answer is not None else Yours()
        target = Target(**answer["target"])
        if await self._landed(command_id, target):
            return Recorded(answer["result"], answer.get("events") or [], unsent=True)
        return Yours(target=target.document_id)

    async def _landed(self, command_id: str, target: Target) -> bool:
        document = await self._db[target.collection].find_one(
            {"_id": _stored_id(target)}, {"_applied": 1}
        )
        if target.removes:
            return document is None
        if document is None:  # removed since, perhaps by a later command: were we there?
            document = await self._db[removed_from(target.collection)].find_one(
                {"_id": _stored_id(target)}, {"_applied": 1}
            )
        return document is not None and marker_of(command_id) in (document.get("_applied") or {})

    async def write_ahead(self, entries: Sequence[WriteAhead]) -> None:
        """Record decided answers before their writes; a new owner's plan replaces the old."""
        now = datetime.now(UTC)
        await self._record(
            [
                {
                    "_id": entry.command_id,
                    "result": entry.result.document(),
                    "events": [event.document() for event in entry.events],
                    "target": vars(entry.target),
                    "at": now,
                }
                for entry in entries
            ]
        )

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        now = datetime.now(UTC)
        async with translated():
            await self._record(
                [
                    {"_id": command_id, "result": result.document(), "events": [], "at": now}
                    for command_id, result in answers.items()
                ]
            )

    async def _record(self, documents: list[dict[str, Any]]) -> None:
        """Plain inserts first, since they are cheap on every server; the few that exist (a
        command planned again) are replaced."""
        if not documents:
            return
        fence = self._fence
        if fence is not None:
            documents = [{**doc, FENCE_FIELD: {fence.key: fence.epoch}} for doc in documents]
        try:
            await self._answers.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            existing = [documents[index] for index in sorted(duplicate_indexes(exc))]
            fenced = fence if self._server.fences_in_filters else None
            await bulk_write_chunked(
                self._answers,
                [ReplaceOne(fenced_filter({"_id": doc["_id"]}, fenced), doc) for doc in existing],
                self._server.bulk_chunk,
            )

    async def finish(self, command_ids: Sequence[str]) -> None:
        if not command_ids:
            return
        now = datetime.now(UTC)
        documents = [{"_id": command_id, "at": now} for command_id in command_ids]
        async with translated():
            try:
                await self._done.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                duplicate_indexes(exc)  # finished before, by a copy answered again

    async def forget_before(self, moment: datetime) -> int:
        old = {"at": {"$lt": moment}}
        async with translated():
            await self._done.delete_many(old)
            await self._answers.delete_many(old)
            await self._takeovers.delete_many(old)
            result = await self._claims.delete_many(old)
        return result.deleted_count


def _stored_id(target: Target) -> Any:
    """The target's `_id` as MongoDB keeps it: profiles are keyed by ObjectId."""
    if target.collection == "profiles":
        return ObjectId(str(target.document_id))
    return target.document_id


def _aware(moment: datetime) -> datetime:
    """A datetime read back from a server without `tz_aware` is naive UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
