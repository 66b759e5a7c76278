"""The inbox (SPEC §9): each command id is decided once, and each copy gets its answer.

One writer per command: copies of a command share its order key, so its partition, and the
broker lets one process consume a partition at a time. The only other process that may still
act on a command is an earlier owner of that partition, cut off or stalled, and the partition
fence (`fence.py`) shuts it out. So commands are never claimed or leased.

One record per command, in `inbox`:
`{_id: "<kind>:<message_id>", plans: {"<partition>-<epoch>": {result, events, target,
partition, epoch, number}}, answer, done, at}`. A plan is written ahead of its write by the
owner that decided it (a refusal is a plan without a target); `answer` names the plan that
landed when owners of several epochs planned the command; `done` is set once the answer is
confirmed; `at` is for the sweep.

A command's life: `recall` at the start of a batch (done: the answer again; planned and
landed: that answer and its events, unsent; planned and not landed: decide it again on its
target), `write_ahead` by the write protocol (`writes.py`), `remember` for refusals, and
`finish` once the answer is confirmed. Whether a plan landed is read from its target's
watermark after this owner sealed the target (`Fence.seal`): from then on a stale owner's
write to it is refused, so what the owner reads is final. A creation cannot be sealed: a
stale owner's insert may land after its successor looked; the successor's own insert of that
id then fails, and the write protocol answers the stale owner's plan.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import Prior, Recorded, Resume
from worker.errors import PartitionLost
from worker.store.errors import duplicate_indexes, translated
from worker.store.fence import Fence, Mark, Watermark

RECORDS = "inbox"

Record = dict[str, Any]
Plan = dict[str, Any]
Collection = Literal["profiles", "relations"]


@dataclass(frozen=True)
class Target:
    """The document a decided write changes: which collection, and its `_id` as the domain
    names it (profiles are stored under an ObjectId)."""

    collection: Collection
    document_id: str | int

    @property
    def stored_id(self) -> Any:
        if self.collection == "profiles":
            return ObjectId(str(self.document_id))
        return self.document_id


@dataclass(frozen=True)
class WriteAhead:
    """A decided answer and the write it goes with (none: a refusal), recorded before the
    write is made."""

    command_id: str
    result: ResultModel
    events: Sequence[Event] = ()
    target: Target | None = None
    mark: Mark | None = None


def plan_of(
    result: ResultModel,
    events: Sequence[Event],
    target: Target | None,
    mark: Mark | None,
    fence: Fence | None,
) -> tuple[str, Plan]:
    """A plan's name in its record (`<partition>-<epoch>-<number>`) and the plan, as JSON."""
    partition, epoch = (fence.key, fence.epoch) if fence else ("-", 0)
    plan = {
        "result": result.document(),
        "events": [event.document() for event in events],
        "target": vars(target) if target else None,
        "partition": partition,
        "epoch": epoch,
        "number": mark.number if mark else 0,
    }
    return f"{partition}-{epoch}-{plan['number']}", plan


def mark_of(plan: Plan) -> Mark:
    return Mark(int(plan["epoch"]), int(plan.get("number", 0)))


def newest(record: Record) -> tuple[str, Plan]:
    """The plan of the latest owner: the one whose write can still land, or did."""
    plans: dict[str, Plan] = record["plans"]
    return max(plans.items(), key=lambda item: mark_of(item[1]))


def answer_of(record: Record) -> Plan:
    """The plan a command answers: the one named, else the latest owner's."""
    named = record.get("answer")
    return record["plans"][named] if named in record["plans"] else newest(record)[1]


def landed_plan(record: Record, target: Target, watermark: Watermark) -> str | None:
    """The plan whose write is on `target`, which carries `watermark` (None: none landed):
    the one named, else the latest plan for that target that the target's last applied mark
    has passed.

    Marks of one partition reach a document in queue order, a later owner's after an earlier
    owner's: an owner plans a command again only when its last plan did not land, and a stale
    owner cannot write ahead a plan for a document after its successor wrote it (its earlier
    commands on that document come first, and the first of them that meets the successor's
    seal or write ends its batch). So a mark at or past a plan's is that plan's write, or a
    later command's after it."""
    if record.get("answer") in record["plans"]:
        return str(record["answer"])
    landed = [
        (mark, str(name))
        for name, plan in record["plans"].items()
        if plan["target"] == vars(target) and (mark := mark_of(plan)) <= watermark.applied
    ]
    return max(landed)[1] if landed else None


class MongoInbox:
    """Implements `worker.domain.shared.ports.Inbox`."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._db = db
        self._records = db[RECORDS]
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MongoInbox:
        """This inbox for the owner of one partition: its plans carry `fence`."""
        fenced = copy.copy(self)
        fenced._fence = fence
        return fenced

    async def ensure_indexes(self) -> None:
        async with translated():
            await self._records.create_index([("at", 1)])

    async def take_over(self, command_ids: Sequence[str]) -> dict[str, Prior]:
        if not command_ids:
            return {}
        async with translated():
            found = await self._records.find({"_id": {"$in": list(command_ids)}}).to_list()
            answers: dict[str, Prior] = {}
            for record in found:
                if record.get("done"):
                    answers[record["_id"]] = Recorded(answer_of(record)["result"])
                else:
                    answers[record["_id"]] = await self._resolved(record)
        return answers

    async def _resolved(self, record: Record) -> Prior:
        """A command decided but not done: a refusal is answered again; a write, if it landed
        (its target sealed first), with the plan that landed, else decided again."""
        _, latest = newest(record)
        if latest["target"] is None:
            return Recorded(latest["result"], unsent=True)
        target = Target(**latest["target"])
        document = await self._sealed(target)
        stored = ((document or {}).get("_w") or {}).get(latest["partition"])
        name = landed_plan(record, target, Watermark.of(stored))
        if name is None:
            return Resume(target.document_id)
        if len(record["plans"]) > 1:
            await self.name_answer(record["_id"], name)
        plan = record["plans"][name]
        return Recorded(plan["result"], plan["events"], unsent=True)

    async def _sealed(self, target: Target) -> dict[str, Any] | None:
        """The target as it was before this owner sealed it (None: absent)."""
        collection = self._db[target.collection]
        if self._fence is None:
            return await collection.find_one({"_id": target.stored_id}, {"_w": 1})
        document = await self._fence.seal(collection, target.stored_id)
        if document is None and await collection.find_one({"_id": target.stored_id}, {"_id": 1}):
            raise PartitionLost("a later owner of this partition sealed a command's target")
        return document

    async def name_answer(self, command_id: str, name: str) -> None:
        """Record which plan a command of several owners' plans answers with."""
        await self._records.update_one({"_id": command_id}, {"$set": {"answer": name}})

    async def landed_before(self, reads: Mapping[str, tuple[Target, Watermark]]) -> set[str]:
        """The commands an earlier owner of whose write landed on its target, as read
        (`reads`: the target and this partition's watermark on it, by command id)."""
        if not reads:
            return set()
        records = await self._records.find({"_id": {"$in": list(reads)}}).to_list()
        return {r["_id"] for r in records if landed_plan(r, *reads[r["_id"]]) is not None}

    async def write_ahead(self, entries: Sequence[WriteAhead]) -> set[str]:
        """Record decided answers before their writes, as this owner's plans, where the
        command has no record yet; the commands that have one (planned by an earlier owner,
        or by this one in an earlier round) are returned, for `add_plans`."""
        return await self._insert([self._record_of(entry) for entry in entries])

    async def add_plans(self, entries: Sequence[WriteAhead]) -> None:
        """Add this owner's plans to the records that exist."""
        await self._set_plans([self._record_of(entry) for entry in entries])

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        records = [self._record_of(WriteAhead(cid, result)) for cid, result in answers.items()]
        async with translated():
            existing = await self._insert(records)
            await self._set_plans([r for r in records if r["_id"] in existing])

    def _record_of(self, entry: WriteAhead) -> Record:
        name, plan = plan_of(entry.result, entry.events, entry.target, entry.mark, self._fence)
        return {"_id": entry.command_id, "plans": {name: plan}, "at": datetime.now(UTC)}

    async def _insert(self, records: Sequence[Record]) -> set[str]:
        """Insert the records; the ids of those that exist already."""
        if not records:
            return set()
        try:
            await self._records.insert_many(records, ordered=False)
        except BulkWriteError as exc:
            return {records[index]["_id"] for index in duplicate_indexes(exc)}
        return set()

    async def _set_plans(self, records: Sequence[Record]) -> None:
        if records:
            updates = [
                UpdateOne(
                    {"_id": record["_id"]},
                    {
                        "$set": {
                            **{f"plans.{n}": p for n, p in record["plans"].items()},
                            "at": record["at"],
                        }
                    },
                )
                for record in records
            ]
            await self._records.bulk_write(updates, ordered=False)

    async def finish(self, command_ids: Sequence[str]) -> None:
        if command_ids:
            async with translated():
                await self._records.update_many(
                    {"_id": {"$in": list(command_ids)}}, {"$set": {"done": True}}
                )

    async def forget_before(self, moment: datetime) -> int:
        async with translated():
            forgotten = await self._records.delete_many({"at": {"$lt": moment}})
        return forgotten.deleted_count
