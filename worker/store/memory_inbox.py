"""The inbox of the in-memory store: `worker.store.inbox.MongoInbox`'s records, in a dict.

Records are the same JSON documents, read by the same rules (`newest`, `answer_of`,
`landed_plan`), and an owner seals a target before it looks, as on MongoDB."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import Recall, Recorded
from worker.errors import PartitionLost
from worker.store.fence import Fence
from worker.store.inbox import Landing, Record, answer_of, plan_of, resolved
from worker.store.markers import Target, removed_from
from worker.store.memory_documents import Clock, Document


class MemoryInbox:
    """Implements `worker.domain.shared.ports.Inbox`; `lease_seconds` as `MongoInbox`'s."""

    def __init__(
        self, clock: Clock, lease_seconds: float, documents: Mapping[str, dict[Any, Document]]
    ) -> None:
        self._clock = clock
        self.lease_seconds = lease_seconds
        self._documents = documents
        self.records: dict[str, Record] = {}
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MemoryInbox:
        fenced = copy.copy(self)
        fenced._fence = fence
        return fenced

    async def recall(self, command_ids: Sequence[str]) -> dict[str, Recall]:
        answers: dict[str, Recall] = {}
        for command_id in command_ids:
            record = self.records.get(command_id)
            if record is not None and record.get("done"):
                answers[command_id] = Recorded(copy.deepcopy(answer_of(record)["result"]))
            elif record is not None:
                answers[command_id] = copy.deepcopy(await resolved(record, self))
        return answers

    async def sealed(self, target: Target) -> Landing | None:
        """The target as it was before this owner stamped its epoch on it."""
        document = self._documents[target.collection].get(target.document_id)
        before, fence = _landing(document), self._fence
        if document is not None and fence is not None:
            if not fence.allows(document.fences):
                raise PartitionLost("a later owner of this partition wrote a command's target")
            document.fences[fence.key] = fence.epoch
        return before

    async def removed(self, target: Target) -> Landing | None:
        return _landing(self._documents[removed_from(target.collection)].get(target.document_id))

    async def name_answer(self, command_id: str, name: str) -> None:
        self.records[command_id]["answer"] = name

    def write_ahead(
        self, entries: Iterable[tuple[str, ResultModel, Sequence[Event], Target]]
    ) -> None:
        """Record decided answers (command id, result, events, target) before their writes."""
        self._record(entries)

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        self._record((command_id, result, (), None) for command_id, result in answers.items())

    def _record(
        self, entries: Iterable[tuple[str, ResultModel, Sequence[Event], Target | None]]
    ) -> None:
        now = self._clock()
        for command_id, result, events, target in entries:
            name, plan = plan_of(result, events, target, self._fence)
            record = self.records.setdefault(command_id, {"_id": command_id, "plans": {}})
            record["plans"][name], record["at"] = plan, now

    async def finish(self, command_ids: Sequence[str]) -> None:
        for command_id in command_ids:
            if command_id in self.records:
                self.records[command_id]["done"] = True

    async def forget_before(self, moment: datetime) -> int:
        old = [key for key, record in self.records.items() if record["at"] < moment]
        for key in old:
            del self.records[key]
        return len(old)


def _landing(document: Document | None) -> Landing | None:
    """A copy: the document changes as later writes land."""
    if document is None:
        return None
    return Landing(dict(document.markers), dict(document.fences))
