"""The dedup inbox: one document per command message id (SPEC §9).

It is also the write-ahead record of a command's decided outcome, so that a command cut short
by a crash is finished with exactly the result and events it was planned with.
FerretDB has no TTL indexes, so old entries are deleted by a periodic sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.domain.ports import InboxEntry
from worker.domain.profiles import FieldChanges, ProfileWrite
from worker.store.bulk import bulk_write_chunked
from worker.store.errors import duplicate_indexes, translated

INBOX = "inbox"
DONE = "inbox_done"


class InboxRepository:
    """Entries are written ahead into `inbox`; `inbox_done` records which were answered.

    Marking done is an insert rather than an update because inserts stay cheap on every
    MongoDB-wire server (FerretDB's SQLite handler rewrites documents slowly).
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._inbox = db[INBOX]
        self._done = db[DONE]

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._inbox.create_index([("at", 1)])
            await self._done.create_index([("at", 1)])

    async def lookup(self, dedup_ids: Sequence[str]) -> dict[str, InboxEntry]:
        if not dedup_ids:
            return {}
        wanted = {"_id": {"$in": list(dedup_ids)}}
        async with translated():
            docs = await self._inbox.find(wanted).to_list()
            if not docs:  # an entry is always written ahead before it can be done
                return {}
            wanted = {"_id": {"$in": [doc["_id"] for doc in docs]}}
            done = {doc["_id"] for doc in await self._done.find(wanted, {"_id": 1}).to_list()}
        return {doc["_id"]: _entry(doc, doc["_id"] in done) for doc in docs}

    async def begin(self, entries: Sequence[InboxEntry], at: datetime) -> None:
        """Write ahead: insert new entries, replace the few that exist (a plan made again).

        Plain inserts first because they are cheap on every server; FerretDB's SQLite handler
        scans the collection for each conditional upsert.
        """
        documents = [_entry_document(entry, at) for entry in entries]
        if not documents:
            return
        async with translated():
            try:
                await self._inbox.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                existing = [documents[index] for index in sorted(duplicate_indexes(exc))]
                await bulk_write_chunked(
                    self._inbox, [ReplaceOne({"_id": doc["_id"]}, doc) for doc in existing]
                )

    async def finish(self, dedup_ids: Sequence[str]) -> None:
        documents = [{"_id": dedup_id, "at": datetime.now(UTC)} for dedup_id in dedup_ids]
        async with translated():
            try:
                await self._done.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                duplicate_indexes(exc)  # finished before, by a redelivery or another worker

    async def forget_before(self, moment: datetime) -> int:
        async with translated():
            await self._done.delete_many({"at": {"$lt": moment}})
            result = await self._inbox.delete_many({"at": {"$lt": moment}})
        return result.deleted_count


def _entry_document(entry: InboxEntry, at: datetime) -> dict[str, Any]:
    return {
        "_id": entry.dedup_id,
        "result": entry.result,
        "events": entry.events,
        "write": _write_document(entry.write) if entry.write else None,
        "at": at,
    }


def _write_document(write: ProfileWrite) -> dict[str, Any]:
    """ProfileWrite as a document; claim keys hold dots, so claims become a list."""
    document = dataclasses.asdict(write)
    document["claims"] = [{"key": k, "owner": v} for k, v in write.claims.items()]
    return document


def _entry(doc: dict[str, Any], done: bool) -> InboxEntry:
    write = doc.get("write")
    return InboxEntry(
        dedup_id=doc["_id"],
        state="done" if done else "pending",
        result=doc["result"],
        events=doc.get("events") or [],
        write=_write_from(write) if write else None,
    )


def _write_from(doc: dict[str, Any]) -> ProfileWrite:
    fields = {**doc}
    fields["changes"] = FieldChanges(**doc["changes"])
    fields["claims"] = {claim["key"]: claim["owner"] for claim in doc["claims"]}
    fields["pruned_markers"] = tuple(doc["pruned_markers"])
    fields["releases"] = tuple(doc["releases"])
    return ProfileWrite(**fields)
