"""The dedup inbox: one document per command message id (SPEC §9).

It is also the write-ahead record of a command's decided outcome, so that a command cut short
by a crash is finished with exactly the result and events it was planned with.
FerretDB has no TTL indexes, so old entries are deleted by a periodic sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.domain.ports import InboxEntry
from worker.domain.profiles import FieldChanges, ProfileWrite
from worker.store.errors import duplicate_indexes, translated

INBOX = "inbox"


class InboxRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._inbox = db[INBOX]

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._inbox.create_index([("at", 1)])

    async def lookup(self, dedup_ids: Sequence[str]) -> dict[str, InboxEntry]:
        if not dedup_ids:
            return {}
        async with translated():
            docs = await self._inbox.find({"_id": {"$in": list(dedup_ids)}}).to_list()
        return {doc["_id"]: _entry(doc) for doc in docs}

    async def begin(self, entries: Sequence[InboxEntry], at: datetime) -> None:
        """Write ahead; an entry already done (by a concurrent worker) is left as it is."""
        operations = [
            ReplaceOne(
                {"_id": entry.dedup_id, "state": {"$ne": "done"}},
                {
                    "state": entry.state,
                    "result": entry.result,
                    "events": entry.events,
                    "write": _write_document(entry.write) if entry.write else None,
                    "at": at,
                },
                upsert=True,
            )
            for entry in entries
        ]
        if not operations:
            return
        async with translated():
            try:
                await self._inbox.bulk_write(operations, ordered=False)
            except BulkWriteError as exc:
                duplicate_indexes(exc)

    async def finish(self, dedup_ids: Sequence[str]) -> None:
        async with translated():
            await self._inbox.update_many(
                {"_id": {"$in": list(dedup_ids)}},
                {"$set": {"state": "done", "events": [], "write": None}},
            )

    async def forget_before(self, moment: datetime) -> int:
        async with translated():
            result = await self._inbox.delete_many({"at": {"$lt": moment}})
        return result.deleted_count


def _write_document(write: ProfileWrite) -> dict[str, Any]:
    """ProfileWrite as a document; claim keys hold dots, so claims become a list."""
    document = dataclasses.asdict(write)
    document["claims"] = [{"key": k, "owner": v} for k, v in write.claims.items()]
    return document


def _entry(doc: dict[str, Any]) -> InboxEntry:
    write = doc.get("write")
    return InboxEntry(
        dedup_id=doc["_id"],
        state=doc["state"],
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
