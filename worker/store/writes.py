"""The write protocol: how a batch's planned writes land on profiles and relations, each at
most once, never after a later owner of the partition wrote. One sequence for both
collections (`WriteProtocol.write`); a repository only says what each write changes
(`Documents`):

1. ahead: a write planned on a document that a later owner of this partition already wrote
   or sealed is `fenced`; the others get this owner's next marks and are written ahead into
   the inbox (answer, events, target, mark), so a next owner can tell what landed;
2. the repository's claims of unique keys (a write that loses one is not sent);
3. land: one unordered bulk of conditional single-document operations. An update filters on
   `_id` and the version it was planned on (`_v`): MongoDB applies it atomically, filter
   included, so it lands only on the document as read, and the read was checked against the
   fence in step 1. A creation is an insert of a fresh `_id`. Each operation leaves its
   command's mark in the document's watermark (`fence.py`). When every operation matched,
   all landed; otherwise the documents are read back once;
4. the repository's keys given up by the writes that applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import WriteStatus
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import VERSION, WATERMARKS, Fence, Mark
from worker.store.inbox import MongoInbox, Target, WriteAhead

Operation = InsertOne[dict[str, Any]] | UpdateOne


@dataclass(frozen=True)
class Stamp:
    """What a read saw of a document: its version and its watermarks (`fence.py`)."""

    version: int = 0
    watermarks: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Stamp:
        return cls(document.get(VERSION, 0), document.get(WATERMARKS) or {})

    def stored(self) -> dict[str, Any]:
        """The stamp as the document it was read from holds it."""
        return {VERSION: self.version, WATERMARKS: self.watermarks}


def stamp_of(read: Any) -> Stamp:
    """The stamp the store put on a profile or relation it read (a blank one for None)."""
    stamp = getattr(read, "stamp", None)
    return stamp if isinstance(stamp, Stamp) else Stamp()


def owner_fence(fence: Fence | None) -> Fence:
    """Only a partition's owner writes: its fence is what makes a write land once."""
    if fence is None:
        raise RuntimeError("writes need the fenced ports of a partition's owner")
    return fence


@dataclass(frozen=True)
class Planned:
    """One command's planned write, as the domain decided it: its answer, its target, and the
    document as the plan read it (None: a creation)."""

    command_id: str | None
    target: Target
    result: ResultModel
    events: Sequence[Event]
    read: Stamp | None


@dataclass(frozen=True)
class Insert:
    """A creation: the new document, without the protocol's fields."""

    document: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """A change of an existing document: update operators, without the protocol's fields."""

    change: dict[str, Any]


W = TypeVar("W", contravariant=True)


class Documents(Protocol[W]):
    """A repository's side of the protocol, for its kind of write `W`."""

    def planned(self, write: W) -> Planned:
        """The write's answer, target and the read it was planned on."""

    async def claim(self, writes: Sequence[W]) -> list[bool]:
        """Take the unique keys the writes need; False for one that lost a key."""

    def change(self, write: W, now: datetime) -> Insert | Update:
        """What the write does to its document."""

    async def release(self, applied: Sequence[W]) -> None:
        """Give up the keys the writes that applied no longer hold."""


class WriteProtocol(Generic[W]):
    """The sequence above, for one collection and one partition owner."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        inbox: MongoInbox,
        fence: Fence | None,
        documents: Documents[W],
    ) -> None:
        self._collection = collection
        self._inbox = inbox
        self._fence = owner_fence(fence)
        self._documents = documents

    async def write(self, writes: Sequence[W]) -> list[WriteStatus]:
        """Make writes touching distinct documents land, each at most once per command."""
        documents = self._documents
        planned = [documents.planned(write) for write in writes]
        async with translated():
            marks = await self._ahead(planned)
            fresh = [w for w, mark in zip(writes, marks, strict=True) if isinstance(mark, Mark)]
            claimed = iter(await documents.claim(fresh))
            now = datetime.now(UTC)
            operations = [
                self._operation(p, documents.change(write, now), mark)
                if isinstance(mark, Mark) and next(claimed)
                else None
                for p, write, mark in zip(planned, writes, marks, strict=True)
            ]
            statuses = await self._land(planned, marks, operations)
            applied = [w for w, status in zip(writes, statuses, strict=True) if status == "applied"]
            await documents.release(applied)
        return statuses

    async def _ahead(self, planned: Sequence[Planned]) -> list[Mark | WriteStatus]:
        """Each write's mark, written ahead with its answer; or its status already: `fenced`
        (planned on a read a later owner of this partition wrote or sealed), `landed_before`
        (the read carries an earlier owner's write of the same command: one whose write
        landed after this owner took the command over)."""
        fence = self._fence
        marks: list[Mark | WriteStatus] = [
            "fenced" if p.read is not None and fence.overtaken(p.read.stored()) else fence.number()
            for p in planned
        ]
        entries = {
            p.command_id: (p, WriteAhead(p.command_id, p.result, p.events, p.target, mark))
            for p, mark in zip(planned, marks, strict=True)
            if isinstance(mark, Mark) and p.command_id is not None
        }
        planned_before = await self._inbox.write_ahead([entry for _, entry in entries.values()])
        reads = {
            command_id: (p.target, fence.watermark(p.read.stored()))
            for command_id, (p, _) in entries.items()
            if command_id in planned_before and p.read is not None
        }
        landed = await self._inbox.landed_before(reads)
        await self._inbox.add_plans(
            [entry for cid, (_, entry) in entries.items() if cid in planned_before - landed]
        )
        return [
            "landed_before" if p.command_id in landed else mark
            for p, mark in zip(planned, marks, strict=True)
        ]

    def _operation(self, planned: Planned, change: Insert | Update, mark: Mark) -> Operation:
        """The conditional operation of one write: an update applies only to the document
        as the plan read it; each leaves the command's mark and the next version."""
        if isinstance(change, Insert):
            created = {VERSION: 1, WATERMARKS: self._fence.created(mark)}
            return InsertOne({**change.document, **created})
        update = dict(change.change)
        update["$set"] = {**update.get("$set", {}), **self._fence.applied(mark)}
        update["$inc"] = {**update.get("$inc", {}), VERSION: 1}
        read = planned.read or Stamp()
        return UpdateOne({"_id": planned.target.stored_id, VERSION: read.version}, update)

    async def _land(
        self,
        planned: Sequence[Planned],
        marks: Sequence[Mark | WriteStatus],
        operations: Sequence[Operation | None],
    ) -> list[WriteStatus]:
        """Send the operations (None: not sent, a claim was lost) and tell how each write
        ended: `applied`, `landed_before` (an earlier owner created the document),
        `conflict` (the document changed since it was read: plan again) or `fenced`."""
        sent = [operation for operation in operations if operation is not None]
        touched, duplicates = await self._bulk(sent)
        if touched == len(sent) == len(planned) and not duplicates:
            return ["applied"] * len(planned)
        ids = [p.target.stored_id for p in planned]
        found = await self._collection.find({"_id": {"$in": ids}}, {WATERMARKS: 1}).to_list()
        documents = {document["_id"]: document for document in found}
        statuses = [
            self._status(documents.get(p.target.stored_id), mark)
            for p, mark in zip(planned, marks, strict=True)
        ]
        return await self._found_landed(planned, statuses, documents)

    async def _bulk(self, operations: Sequence[Operation]) -> tuple[int, bool]:
        """How many operations found (or made) their document, and whether an insert met an
        existing `_id`."""
        if not operations:
            return 0, False
        try:
            result = await self._collection.bulk_write(list(operations), ordered=False)
            details: Mapping[str, Any] = result.bulk_api_result
        except BulkWriteError as exc:
            duplicate_indexes(exc)  # re-raises anything but duplicates
            details = exc.details
            touched = details.get("nMatched", 0) + details.get("nInserted", 0)
            return touched, True
        return details.get("nMatched", 0) + details.get("nInserted", 0), False

    def _status(self, document: Mapping[str, Any] | None, mark: Mark | WriteStatus) -> WriteStatus:
        if not isinstance(mark, Mark):
            return mark
        if self._fence.overtaken(document):
            return "fenced"
        if document is not None and self._fence.watermark(document).applied == mark:
            return "applied"
        return "conflict"

    async def _found_landed(
        self,
        planned: Sequence[Planned],
        statuses: list[WriteStatus],
        documents: Mapping[Any, Mapping[str, Any]],
    ) -> list[WriteStatus]:
        """A write that found its document changed landed before when the document carries
        an earlier plan of the same command (a stale owner's insert that landed after this
        owner looked: an insert cannot be sealed; or the command written again on a read from
        before its write); else it conflicts: plan again."""
        found = [
            i
            for i, p in enumerate(planned)
            if statuses[i] == "conflict"
            and p.command_id is not None
            and p.target.stored_id in documents
        ]
        if not found:
            return statuses
        reads = {
            str(planned[i].command_id): (
                planned[i].target,
                self._fence.watermark(documents[planned[i].target.stored_id]),
            )
            for i in found
        }
        landed = await self._inbox.landed_before(reads)
        for i in found:
            if planned[i].command_id in landed:
                statuses[i] = "landed_before"
        return statuses
