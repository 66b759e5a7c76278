"""Fencing tokens: a process that lost its partition can never land a write after its
successor wrote.

The broker gives a partition to one consumer at a time, but a process cut off from the broker
(or stalled) may still be between its read and its write when the next owner starts. So each
owner draws the partition's next epoch when it takes it (`partition_epochs`: `{_id: the
partition queue, epoch}`, one `$inc`), and every profile and relation it writes carries it in
`_fence.<partition hash>` (its answers in the inbox carry it in their plan's name); an update
applies only while the document's epoch for that partition is not newer than the writer's. On
MongoDB the condition is part of the update's filter, so it is atomic per document. FerretDB
1.24 reads, then writes, without isolation: there a stale write can still interleave with its
successor's write to the same document at the same instant, but not land after it (the
successor's epoch is on the document from then on); the revision each writer holds
(`revisions.py`) serializes the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from worker.domain.shared.identity import short_hash
from worker.errors import StoreUnavailable
from worker.store.errors import translated

FIELD = "_fence"
EPOCHS = "partition_epochs"


@dataclass(frozen=True)
class Fence:
    """The epoch at which this process took `partition`."""

    partition: str
    epoch: int

    @property
    def key(self) -> str:
        """The partition's name in `_fence` (queue names have dots, field names may not)."""
        return short_hash(self.partition)

    def condition(self) -> dict[str, Any]:
        """The filter part that lets the write apply: no later owner wrote here."""
        return {f"{FIELD}.{self.key}": {"$not": {"$gt": self.epoch}}}

    def stamp(self) -> dict[str, Any]:
        """The `$set` part that leaves this epoch on the document."""
        return {f"{FIELD}.{self.key}": self.epoch}

    def allows(self, fences: Mapping[str, int] | None) -> bool:
        """Whether a document carrying `fences` may still be written under this fence."""
        return (fences or {}).get(self.key, 0) <= self.epoch


def fenced_filter(condition: dict[str, Any], fence: Fence | None) -> dict[str, Any]:
    return {**condition, **fence.condition()} if fence else condition


def fence_stamp(fence: Fence | None) -> dict[str, Any]:
    return fence.stamp() if fence else {}


def fences_of(document: Mapping[str, Any] | None) -> dict[str, int]:
    return dict((document or {}).get(FIELD) or {})


def overtaken(fence: Fence | None, document: Mapping[str, Any] | None) -> bool:
    """A later owner of this writer's partition wrote the document."""
    return fence is not None and not fence.allows(fences_of(document))


async def next_fence(epochs: AsyncCollection[dict[str, Any]], partition: str) -> Fence:
    """The partition's next epoch, for a process that has just taken it. Only its consumer
    draws one, and the broker lets one consume at a time, so the `$inc` needs no isolation;
    two processes taking a quorum partition at once (see `ownership.py`) may both upsert its
    first epoch, and the one that loses reads the document the other made."""
    async with translated():
        for _ in range(3):
            try:
                document = await epochs.find_one_and_update(
                    {"_id": partition},
                    {"$inc": {"epoch": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # two first upserts at once: the document exists now
                continue
            assert document is not None  # an upsert returns the document after it
            return Fence(partition, int(document["epoch"]))
    raise StoreUnavailable(f"no epoch for partition {partition}: concurrent first upserts")
