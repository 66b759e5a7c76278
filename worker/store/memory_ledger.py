"""Stored documents and the command ledger of the in-memory store (`worker.store.memory`).

The ledger mirrors `worker.store.ledger.MongoLedger`: a command id is claimed for an owner with
a lease; a copy gets Busy while the lease lasts and the answer once the command is finished;
after the lease ends a new owner takes the claim over and first checks, by the command's
marker on the target document (or the document being gone, for a removal), whether the dead
owner's written-ahead write landed. Leases are measured on an injectable clock.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.ports import Busy, Claim, Recorded, Yours
from worker.domain.shared.profiles import Profile
from worker.domain.shared.relations import Relation
from worker.store.fence import Fence
from worker.store.markers import (
    Stamp,
    Target,
    marker_keep_ms,
    marker_of,
    marker_time,
    removed_from,
    stamp_of,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Document:
    """A stored profile or relation: its state (without stamp), version and markers."""

    state: Any
    version: int
    markers: dict[str, int]
    fences: dict[str, int] = field(default_factory=dict)
    """Epochs of the partition owners that wrote it (see `worker.store.fence`)."""

    def stamp(self) -> Stamp:
        return Stamp(self.version, dict(self.markers), dict(self.fences))


@dataclass
class _Answer:
    result: dict[str, Any]
    events: list[dict[str, Any]]
    target: Target | None
    at: datetime


@dataclass
class _Hold:
    owner: str
    lease_until: datetime
    at: datetime


class MemoryLedger:
    """Implements `worker.domain.shared.ports.Ledger` like `worker.store.ledger.MongoLedger`."""

    def __init__(
        self,
        clock: Clock,
        lease_seconds: float,
        documents: Mapping[str, Mapping[Any, Document]],
    ) -> None:
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self.lease_seconds = lease_seconds
        self._documents = documents
        self.holds: dict[str, _Hold] = {}
        self.answers: dict[str, _Answer] = {}
        self.done: dict[str, datetime] = {}
        self.takeovers: dict[str, datetime] = {}

    async def claim(self, command_ids: Sequence[str], owner: str) -> dict[str, Claim]:
        now = self._clock()
        claims: dict[str, Claim] = {}
        for command_id in command_ids:
            if command_id not in self.holds:
                self.holds[command_id] = _Hold(owner, now + self._lease, now)
                claims[command_id] = Yours()
            else:
                claims[command_id] = self._claimed_before(command_id, owner, now)
        return claims

    def _claimed_before(self, command_id: str, owner: str, now: datetime) -> Claim:
        answer, hold = self.answers.get(command_id), self.holds.get(command_id)
        if command_id in self.done and answer is not None:
            return Recorded(copy.deepcopy(answer.result))
        if hold is not None and (hold.owner == owner or self._take_over(command_id, owner, now)):
            return self._resumed(command_id, answer)
        return Busy()

    def _take_over(self, command_id: str, owner: str, now: datetime) -> bool:
        """Take a claim whose lease ended; one takeover per lease, as on MongoDB."""
        hold = self.holds[command_id]
        if hold.lease_until > now:
            return False
        takeover = f"{command_id}@{int(hold.lease_until.timestamp() * 1000)}"
        if takeover in self.takeovers:
            return False
        self.takeovers[takeover] = now
        hold.owner, hold.lease_until = owner, now + self._lease
        return True

    def _resumed(self, command_id: str, answer: _Answer | None) -> Claim:
        """A claim taken over (or held by this owner before): did the decided write land?"""
        if answer is None:
            return Yours()
        if answer.target is None:
            return Recorded(copy.deepcopy(answer.result), unsent=True)
        if self._landed(command_id, answer.target):
            return Recorded(copy.deepcopy(answer.result), copy.deepcopy(answer.events), unsent=True)
        return Yours(target=answer.target.document_id)

    def _landed(self, command_id: str, target: Target) -> bool:
        document = self._documents[target.collection].get(target.document_id)
        if target.removes:
            return document is None
        if document is None:  # removed since, perhaps by a later command: were we there?
            document = self._documents[removed_from(target.collection)].get(target.document_id)
        return document is not None and marker_of(command_id) in document.markers

    def write_ahead(
        self, entries: Iterable[tuple[str, ResultModel, Sequence[Event], Target]]
    ) -> None:
        """Record decided answers (command id, result, events, target) before their writes,
        as JSON documents like the MongoDB ledger; a new owner's plan replaces the old."""
        now = self._clock()
        for command_id, result, events, target in entries:
            documents = [event.document() for event in events]
            self.answers[command_id] = _Answer(result.document(), documents, target, now)

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        now = self._clock()
        for command_id, result in answers.items():
            self.answers[command_id] = _Answer(result.document(), [], None, now)

    async def finish(self, command_ids: Sequence[str]) -> None:
        now = self._clock()
        for command_id in command_ids:
            self.done.setdefault(command_id, now)

    async def forget_before(self, moment: datetime) -> int:
        for entries in (self.done, self.takeovers):
            for key in [key for key, at in entries.items() if at < moment]:
                del entries[key]
        for key in [key for key, answer in self.answers.items() if answer.at < moment]:
            del self.answers[key]
        old = [key for key, hold in self.holds.items() if hold.at < moment]
        for key in old:
            del self.holds[key]
        return len(old)


def read_stamped(document: Document) -> Any:
    """A copy of a stored profile or relation, stamped with what was read."""
    return replace(copy.deepcopy(document.state), stamp=document.stamp())


def fenced_write(previous: Document | None, written: Document, fence: Fence | None) -> Document:
    """`written`, carrying the epochs its document had and the writer's own."""
    written.fences = {**(previous.fences if previous else {}), **fence_stamp_of(fence)}
    return written


def fence_stamp_of(fence: Fence | None) -> dict[str, int]:
    return {fence.key: fence.epoch} if fence else {}


def overtaken_document(fence: Fence | None, document: Document | None) -> bool:
    """A later owner of the writer's partition wrote the document."""
    return fence is not None and document is not None and not fence.allows(document.fences)


def still_as_read(document: Document | None, before: Profile | Relation | None) -> bool:
    """A creation needs no document; a change, the document at the version it was read at."""
    if before is None:
        return document is None
    return document is not None and document.version == stamp_of(before).version


def markers_after(
    document: Document | None, before: Any, marker: str, now: datetime, lease_seconds: float
) -> dict[str, int]:
    pruned = set(stamp_of(before).pruned(marker_time(now), marker_keep_ms(lease_seconds)))
    kept = {} if document is None else dict(document.markers)
    markers = {name: at for name, at in kept.items() if name not in pruned}
    markers[marker] = marker_time(now)
    return markers
