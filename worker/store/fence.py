"""Partition owners and what they leave on the documents they write.

The broker gives a partition to one consumer at a time, but a process cut off from the broker
(or stalled) may still be between its read and its write when the next owner starts. So each
owner draws the partition's next epoch when it takes it (`partition_epochs`: `{_id: the
partition queue, epoch}`, one `$inc`), and numbers the commands it decides (`Fence.number`).

Every profile and relation a command writes carries, per partition, a **watermark**
`_w.<partition hash> = {f, e, s}`: `f`, the latest owner epoch that wrote or sealed it (a
fence: an owner reading a larger `f` has lost its partition), and `(e, s)`, the epoch and
number of the last command of that partition applied to it. Commands of one partition reach
one document in queue order (a batch's later command on a target waits for the earlier one),
so a command numbered `(e, s)` landed on its target exactly when the target's `(e, s)` is at
least that. One field per partition that writes a document: no per-command markers, nothing
to prune.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from worker.domain.shared.identity import short_hash
from worker.errors import StoreUnavailable
from worker.store.errors import translated

WATERMARKS = "_w"
VERSION = "_v"
EPOCHS = "partition_epochs"


@dataclass(frozen=True, order=True)
class Mark:
    """Where one command stands in its partition's history: owner epoch, then number."""

    epoch: int
    number: int


@dataclass(frozen=True)
class Watermark:
    """A document's watermark for one partition (see the module's docstring)."""

    fence: int = 0
    applied: Mark = Mark(0, 0)

    @classmethod
    def of(cls, stored: Mapping[str, int] | None) -> Watermark:
        if not stored:
            return cls()
        return cls(stored.get("f", 0), Mark(stored.get("e", 0), stored.get("s", 0)))


@dataclass
class Fence:
    """The epoch at which this process took `partition`, and the numbers of its commands."""

    partition: str
    epoch: int
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def key(self) -> str:
        """The partition's name in `_w` (queue names have dots, field names may not)."""
        return short_hash(self.partition)

    def number(self) -> Mark:
        """The next command's mark: greater than every mark this owner gave before."""
        return Mark(self.epoch, next(self._numbers))

    def watermark(self, document: Mapping[str, Any] | None) -> Watermark:
        """This partition's watermark on a stored document (a blank one if none)."""
        return Watermark.of(((document or {}).get(WATERMARKS) or {}).get(self.key))

    def overtaken(self, document: Mapping[str, Any] | None) -> bool:
        """A later owner of this partition wrote or sealed the document."""
        return self.watermark(document).fence > self.epoch

    def applied(self, mark: Mark) -> dict[str, Any]:
        """The `$set` that records a command's write on its document."""
        return {f"{WATERMARKS}.{self.key}": {"f": self.epoch, "e": mark.epoch, "s": mark.number}}

    def created(self, mark: Mark) -> dict[str, Any]:
        """The watermark of a document a command creates."""
        return {self.key: {"f": self.epoch, "e": mark.epoch, "s": mark.number}}

    async def seal(
        self, collection: AsyncCollection[dict[str, Any]], document_id: Any
    ) -> dict[str, Any] | None:
        """Stamp this owner's epoch on a document and return it as it was (None: absent, or
        sealed by a later owner). The version moves, so a stale owner's write planned on the
        document before can no longer land."""
        path = f"{WATERMARKS}.{self.key}"
        return await collection.find_one_and_update(
            {"_id": document_id, f"{path}.f": {"$not": {"$gt": self.epoch}}},
            {"$set": {f"{path}.f": self.epoch}, "$inc": {VERSION: 1}},
            return_document=ReturnDocument.BEFORE,
        )


async def next_fence(epochs: AsyncCollection[dict[str, Any]], partition: str) -> Fence:
    """The partition's next epoch, for a process that has just taken it. Only its consumer
    draws one, and the broker lets one consume at a time; two processes taking a quorum
    partition at once (see `ownership.py`) may both upsert its first epoch, and the one that
    loses reads the document the other made."""
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
