"""The inbox (SPEC §9): each command id is decided once, and each copy gets its answer.

One writer per command: copies of a command share its order key, so its partition, and the
broker lets one process consume a partition at a time. The only other process that may still
act on a command is an earlier owner of that partition, cut off or stalled, and every write
it makes carries its epoch (`fence.py`), which a later owner's write shuts out. So no command
is claimed, leased or taken over; an owner learns at the start of a batch what was decided
before, and a stale owner's answer is told apart from its successor's by the epoch.

What it keeps, every collection and field:

- `inbox`, one record per command: `{_id: "<kind>:<message_id>", plans: {"<partition>-<epoch>":
  {result, events, target, partition, epoch}}, answer, at}`. A plan is written ahead of its
  write, by the owner (partition hash and epoch) that decided it; a refusal is a plan without
  a target. `answer` names the plan that landed when owners of several epochs planned the
  command; `at` is for the sweep. Once the answer is published the record gets its done mark,
  `{_id: "<kind>:<message_id> done", at}` beside it: an insert, because FerretDB 1.24 scans
  the collection for every update (marking 32 records done by `update_many` took 344 ms in a
  3 000-record inbox, inserting 32 marks 4 ms).
- On each profile and relation written: `_applied.<marker>` (the command's marker, see
  `markers.py`: the proof that its write landed), `_fence.<partition>` (the epoch of the last
  owner of that partition that wrote it) and `_v` (its version, reserved in
  `profile_revisions` / `relation_revisions` before it changes, see `revisions.py`).
- `relations_removed`: the markers of a removed relation, so that a command whose write
  landed before a later command removed its relation is known to have landed.
- `partition_epochs`: each partition's last epoch (`fence.py`).

A command's life: `recall` (what was decided before: done, the answer again; written ahead
and landed, that answer and its events, unsent; written ahead and not landed, decide it again
on its target), then the repository's `write` (`write_ahead`, then the document with its
marker), `remember` for refusals (before any later write of the batch), and `finish` once the
answer is confirmed. An owner that finds an earlier epoch's plan not done first seals its
target (stamps its own epoch on it, reading it as it was): from then on the stale owner's
write to it is refused, so what the owner reads is final. A creation cannot be sealed: a stale
owner's insert may still land after its successor looked; the successor's own insert of that
id then fails, it finds the marker, and answers the stale owner's plan, chosen by the epoch on
the document. FerretDB 1.24 does not isolate the seal's condition (see `fence.py`), and
mongo-java-server goes without fence conditions (`server.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import Recall, Recorded, Resume
from worker.errors import PartitionLost
from worker.store.bulk import bulk_write_chunked
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import FIELD as FENCE_FIELD
from worker.store.fence import Fence
from worker.store.markers import Target, marker_of, removed_from
from worker.store.server import ServerTraits

RECORDS = "inbox"
DONE = " done"
"""The suffix of a record's done mark."""

Record = dict[str, Any]
Plan = dict[str, Any]


@dataclass(frozen=True)
class WriteAhead:
    """A decided answer and the write it goes with, recorded before the write is made."""

    command_id: str
    result: ResultModel
    events: Sequence[Event]
    target: Target


def plan_of(
    result: ResultModel, events: Sequence[Event], target: Target | None, fence: Fence | None
) -> tuple[str, Plan]:
    """A plan's name in its record (`<partition>-<epoch>`) and the plan, as JSON."""
    partition, epoch = (fence.key, fence.epoch) if fence else ("-", 0)
    plan = {
        "result": result.document(),
        "events": [event.document() for event in events],
        "target": vars(target) if target else None,
        "partition": partition,
        "epoch": epoch,
    }
    return f"{partition}-{epoch}", plan


def newest(record: Record) -> Plan:
    """The plan of the latest owner: the one whose write can still land, or did."""
    plans: dict[str, Plan] = record["plans"]
    return max(plans.values(), key=lambda plan: int(plan["epoch"]))


def answer_of(record: Record) -> Plan:
    """The plan a finished command answers: the one named, else the latest owner's."""
    named = record.get("answer")
    return record["plans"][named] if named in record["plans"] else newest(record)


def landed_plan(record: Record, fences: Mapping[str, int]) -> tuple[str, Plan]:
    """Which owner's plan landed on a document whose fences are `fences`: the one whose
    epoch the document carries (no later command of the partition wrote it since: they all
    wait for this one), else the latest owner's."""
    plans: dict[str, Plan] = record["plans"]
    for name, plan in plans.items():
        if plan["target"] is not None and fences.get(plan["partition"]) == plan["epoch"]:
            return name, plan
    latest = newest(record)
    return next(name for name, plan in plans.items() if plan is latest), latest


def recalled(plan: Plan, landed: bool) -> Recall:
    """What a plan not yet done means for its next owner."""
    if landed:
        return Recorded(plan["result"], plan["events"], unsent=True)
    return Resume(plan["target"]["document_id"])


@dataclass(frozen=True)
class Landing:
    """What a command's target holds of the writes that landed on it."""

    markers: Collection[str]
    fences: Mapping[str, int]


class Targets(Protocol):
    """How an inbox reads the targets of commands decided but not done (each store its own)."""

    async def sealed(self, target: Target) -> Landing | None:
        """The target as it was before this owner stamped its epoch on it (None: absent)."""

    async def removed(self, target: Target) -> Landing | None:
        """What a removal kept of the target, if one removed it since."""

    async def name_answer(self, command_id: str, name: str) -> None:
        """Record which plan a command of several owners' plans answers with."""


async def resolved(record: Record, targets: Targets) -> Recall:
    """A command decided but not done: a refusal is answered again; a write, if it landed
    (its target sealed first), with the plan that landed, else decided again."""
    latest = newest(record)
    if latest["target"] is None:
        return Recorded(latest["result"], unsent=True)
    target = Target(**latest["target"])
    landing = await targets.sealed(target)
    if target.removes:
        return recalled(latest, landing is None)
    if landing is None:  # removed since, perhaps by a later command: were we there?
        landing = await targets.removed(target)
    if landing is None or marker_of(record["_id"]) not in landing.markers:
        return recalled(latest, False)
    name, plan = landed_plan(record, landing.fences)
    if len(record["plans"]) > 1:
        await targets.name_answer(record["_id"], name)
    return recalled(plan, True)


class MongoInbox:
    """Implements `worker.domain.shared.ports.Inbox` on a MongoDB-wire server.

    `lease_seconds` is not a lease of commands (there is none): it is how long a version
    reservation or a marker must outlive a writer that died (`revisions.py`, `markers.py`)."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], lease_seconds: float, server: ServerTraits
    ) -> None:
        self._db = db
        self._server = server
        self._records = db[RECORDS]
        self.lease_seconds = lease_seconds
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MongoInbox:
        """This inbox for the owner of one partition: its plans carry `fence`."""
        fenced = copy.copy(self)
        fenced._fence = fence
        return fenced

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._records.create_index([("at", 1)])

    async def recall(self, command_ids: Sequence[str]) -> dict[str, Recall]:
        if not command_ids:
            return {}
        wanted = [*command_ids, *(command_id + DONE for command_id in command_ids)]
        async with translated():
            found = await self._records.find({"_id": {"$in": wanted}}).to_list()
            done = {doc["_id"].removesuffix(DONE) for doc in found if doc["_id"].endswith(DONE)}
            answers: dict[str, Recall] = {}
            for record in found:
                if "plans" not in record:
                    continue  # a done mark
                if record["_id"] in done:
                    answers[record["_id"]] = Recorded(answer_of(record)["result"])
                else:
                    answers[record["_id"]] = await resolved(record, self)
        return answers

    async def sealed(self, target: Target) -> Landing | None:
        """The target as it was when this owner stamped its epoch on it (None if absent): a
        stale owner's write to it is refused from then on."""
        collection = self._db[target.collection]
        wanted, projection = {"_id": _stored_id(target)}, {"_applied": 1, FENCE_FIELD: 1}
        fence = self._fence
        if fence is None or not self._server.fences_in_filters:
            return _landing(await collection.find_one(wanted, projection))
        document = await collection.find_one_and_update(  # FerretDB 1.24: no projection here
            {**wanted, **fence.condition()},
            {"$set": fence.stamp()},
            return_document=ReturnDocument.BEFORE,
        )
        if document is None and await collection.find_one(wanted, {"_id": 1}) is not None:
            raise PartitionLost("a later owner of this partition wrote a command's target")
        return _landing(document)

    async def removed(self, target: Target) -> Landing | None:
        removed = self._db[removed_from(target.collection)]
        return _landing(await removed.find_one({"_id": _stored_id(target)}, {"_applied": 1}))

    async def name_answer(self, command_id: str, name: str) -> None:
        await self._records.update_one({"_id": command_id}, {"$set": {"answer": name}})

    async def write_ahead(self, entries: Sequence[WriteAhead]) -> None:
        """Record decided answers before their writes, as this owner's plans."""
        await self._record(
            [(entry.command_id, entry.result, entry.events, entry.target) for entry in entries]
        )

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        async with translated():
            await self._record([(cid, result, (), None) for cid, result in answers.items()])

    async def _record(
        self, plans: Sequence[tuple[str, ResultModel, Sequence[Event], Target | None]]
    ) -> None:
        """Plain inserts first, since they are cheap on every server; a record that exists
        (planned before, by this owner or an earlier one) gets this owner's plan set."""
        if not plans:
            return
        now = datetime.now(UTC)
        named = [plan_of(res, events, target, self._fence) for _, res, events, target in plans]
        records = [
            {"_id": command_id, "plans": {name: plan}, "at": now}
            for (command_id, *_), (name, plan) in zip(plans, named, strict=True)
        ]
        try:
            await self._records.insert_many(records, ordered=False)
        except BulkWriteError as exc:
            updates = [
                UpdateOne(
                    {"_id": records[index]["_id"]},
                    {"$set": {f"plans.{named[index][0]}": named[index][1], "at": now}},
                )
                for index in sorted(duplicate_indexes(exc))
            ]
            await bulk_write_chunked(self._records, updates, self._server.bulk_chunk)

    async def finish(self, command_ids: Sequence[str]) -> None:
        if not command_ids:
            return
        now = datetime.now(UTC)
        marks = [{"_id": command_id + DONE, "at": now} for command_id in command_ids]
        async with translated():
            try:
                await self._records.insert_many(marks, ordered=False)
            except BulkWriteError as exc:
                duplicate_indexes(exc)  # marked before, by a copy answered again

    async def forget_before(self, moment: datetime) -> int:
        old = {"at": {"$lt": moment}}
        async with translated():
            records = await self._records.delete_many({**old, "plans": {"$exists": True}})
            await self._records.delete_many(old)  # their done marks
        return records.deleted_count


def _landing(document: Record | None) -> Landing | None:
    if document is None:
        return None
    return Landing(document.get("_applied") or {}, document.get(FENCE_FIELD) or {})


def _stored_id(target: Target) -> Any:
    """The target's `_id` as MongoDB keeps it: profiles are keyed by ObjectId."""
    if target.collection == "profiles":
        return ObjectId(str(target.document_id))
    return target.document_id
