"""Version reservations: the compare-and-swap that holds on MongoDB and FerretDB alike.

Before a writer updates (or deletes) a document planned on version `v`, it inserts the
revision `<id>:<v+1>`. Inserts keyed by `_id` are atomic on both servers, so of several writers
planned on one version exactly one wins; conditional updates would not do (FerretDB reads,
then writes, without isolation). The winner may then filter its write on `_id` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from worker.store.errors import duplicate_indexes


class Revisions:
    """One collection of reservations for one kind of document.

    `stranded_seconds` (`command_lease_seconds`): a writer that has not written within it
    is presumed dead. Profiles reached by keys of several partitions have writers in several
    processes, so a reservation is the one lock left; a stale writer that wakes after its
    reservation was removed is still refused by the fence, if a later owner of its partition
    wrote the document."""

    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], stranded_seconds: float
    ) -> None:
        self._collection = collection
        self._stranded = timedelta(seconds=stranded_seconds)

    async def ensure_indexes(self) -> None:
        await self._collection.create_index([("at", 1)])

    async def reserve(self, versions: Sequence[tuple[object, int]], now: datetime) -> list[bool]:
        """Reserve version `expected + 1` of each (document id, expected version).

        A revision stranded by a crash is removed once it is older than the lease, so its
        document does not stay locked; the writers held back meanwhile retry (in a later
        round or batch, in queue order). Known gap: a writer that stalls longer than that
        between its reservation and its write could overlap the next writer from another
        partition (one of its own partition shuts it out with the fence).
        """
        documents = [
            {"_id": f"{doc_id}:{expected + 1}", "of": doc_id, "at": now}
            for doc_id, expected in versions
        ]
        taken = [True] * len(documents)
        if not documents:
            return taken
        try:
            await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            stranded_before = now - self._stranded
            for position in duplicate_indexes(exc):
                taken[position] = False
                await self._collection.delete_one(
                    {"_id": documents[position]["_id"], "at": {"$lt": stranded_before}}
                )
        return taken

    async def release(self, versions: Sequence[tuple[object, int]]) -> None:
        """Give back reservations whose writes will never be made (a fenced writer's), so the
        next writer need not wait for them to be stranded."""
        if versions:
            names = [f"{doc_id}:{expected + 1}" for doc_id, expected in versions]
            await self._collection.delete_many({"_id": {"$in": names}})

    async def forget_before(self, moment: datetime) -> None:
        """Old revisions only guard versions no planner will ask for again."""
        await self._collection.delete_many({"at": {"$lt": moment}})
