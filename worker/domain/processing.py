"""What every command processor shares: the ledger claim, copies, refusals, and rounds."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from worker.contract.common import ResultModel, feedback_id_of, parse_json_object
from worker.domain.envelope import Envelope, Outcome
from worker.domain.shared.ports import Answered, Busy, Stores, WriteStatus, Yours
from worker.errors import InvalidCommand, Refusal

MAX_ROUNDS = 8

Clock = Callable[[], datetime]


class Invalid(InvalidCommand):
    """A parsed body that failed validation: not dead-lettered, and may echo feedback_id."""

    def __init__(self, text: str, feedback_id: str | None) -> None:
        super().__init__(text)
        self.feedback_id = feedback_id


class FeedbackId(Protocol):
    @property
    def feedback_id(self) -> str | None: ...


class Keyed(Protocol):
    """A command on its way through a batch: where it stands, and what its answer echoes."""

    @property
    def index(self) -> int: ...
    @property
    def order_key(self) -> str: ...
    @property
    def envelope(self) -> Envelope: ...
    @property
    def dedup_id(self) -> str | None: ...
    @property
    def command(self) -> FeedbackId: ...


class Answering(Protocol):
    """A planned write: what it answers and emits once it lands."""

    @property
    def result(self) -> dict[str, Any]: ...
    @property
    def events(self) -> list[dict[str, Any]]: ...


K = TypeVar("K", bound=Keyed)
W = TypeVar("W", bound=Answering)
C = TypeVar("C")


def first_copies(command_ids: Sequence[str | None]) -> dict[str, int]:
    """The position of the first copy of each command id in a batch."""
    first: dict[str, int] = {}
    for index, command_id in enumerate(command_ids):
        if command_id is not None:
            first.setdefault(command_id, index)
    return first


def claimed_outcome(claim: Answered | Busy, command_id: str | None) -> Outcome:
    """The outcome of a command this process does not decide now."""
    if isinstance(claim, Busy):
        return Outcome(result={}, defer="a copy of this command is being decided elsewhere")
    if claim.events:  # its owner died after the write: answer and publish for it
        return Outcome(dict(claim.result), [dict(e) for e in claim.events], dedup_id=command_id)
    return Outcome(dict(claim.result), replayed=True)


def as_copy(outcome: Outcome | None) -> Outcome | None:
    """What a later copy of a command in the same batch gets: its first copy's answer, without
    its events being published again."""
    return None if outcome is None else replace(outcome, events=[], replayed=True)


def one_per_key(jobs: Sequence[K]) -> tuple[list[K], list[K]]:
    """The first job of each order key now; the rest, in order, for later rounds."""
    seen: set[str] = set()
    now: list[K] = []
    later: list[K] = []
    for job in jobs:
        (later if job.order_key in seen else now).append(job)
        seen.add(job.order_key)
    return now, later


class CommandProcessor(ABC, Generic[K]):
    """The life of a batch of commands that change data (imports, relation commands).

    Each command with a message id is claimed in the ledger first, so that of all its copies
    (in this batch, in later batches, in other processes) exactly one is decided, once: a
    copy of an answered command gets the recorded answer, a copy of one that another process
    is deciding right now comes back later, and copies inside one batch follow their first.
    The rest run in rounds of one command per order key, so later commands on the same key
    see the effect of earlier ones.
    """

    dedup_prefix: str
    result_model: type[ResultModel]

    def __init__(self, stores: Stores, clock: Clock, max_message_bytes: int) -> None:
        self._stores = stores
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._owner = uuid.uuid4().hex

    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        command_ids = [
            f"{self.dedup_prefix}:{e.message_id}" if e.message_id else None for e in envelopes
        ]
        first = first_copies(command_ids)
        claims = await self._stores.ledger.claim(list(first), self._owner)
        jobs: list[K] = []
        for index, (envelope, command_id) in enumerate(zip(envelopes, command_ids, strict=True)):
            if command_id is not None and first[command_id] != index:
                continue
            claim = claims[command_id] if command_id else Yours()
            if isinstance(claim, Yours):
                job = self._admitted(index, envelope, command_id, claim, outcomes)
                jobs += [job] if job is not None else []
            else:
                outcomes[index] = claimed_outcome(claim, command_id)
        await self._run(jobs, outcomes)
        refusals = {o.dedup_id: o.result for o in outcomes if o and o.dedup_id and o.refused}
        if refusals:
            await self._stores.ledger.remember(refusals)
        for index, command_id in enumerate(command_ids):
            if command_id is not None and first[command_id] != index:
                outcomes[index] = as_copy(outcomes[first[command_id]])
        return [outcome or Outcome(result={}, retry="not processed") for outcome in outcomes]

    async def complete(self, outcomes: Sequence[Outcome]) -> None:
        """Mark answered commands done in the ledger; call after their answers are published."""
        finished = [o.dedup_id for o in outcomes if o.dedup_id and o.final and not o.replayed]
        if finished:
            await self._stores.ledger.finish(finished)

    def failure(self, envelope: Envelope, code: int, text: str) -> dict[str, Any]:
        """The result for a command that cannot be processed at all (e.g. retries spent)."""
        return self._result_for(envelope, code, text)

    def _admitted(
        self,
        index: int,
        envelope: Envelope,
        command_id: str | None,
        claim: Yours,
        outcomes: list[Outcome | None],
    ) -> K | None:
        """The job of a command this process decides, or None if it is refused already."""
        try:
            return self._job(index, envelope, command_id, claim.target)
        except Invalid as refusal:
            outcomes[index] = self._refused(envelope, command_id, refusal, refusal.feedback_id)
        except InvalidCommand as refusal:
            outcomes[index] = self._refused(envelope, command_id, refusal, dead_letter=True)
        return None

    @abstractmethod
    def _job(
        self, index: int, envelope: Envelope, dedup_id: str | None, target: str | int | None
    ) -> K:
        """Parse and validate one command; raise Invalid (or InvalidCommand if unparsable).

        `target` is the document an owner of the command that died had chosen (see `Yours`).
        """

    def _decoded(self, envelope: Envelope, decode: Callable[[dict[str, Any]], C]) -> C:
        """The body decoded by `decode`: InvalidCommand if it is not a JSON object (to be
        dead-lettered), Invalid, echoing its `feedback_id`, if it does not validate."""
        raw = parse_json_object(envelope.body, self._max_message_bytes)
        try:
            return decode(raw)
        except InvalidCommand as refusal:
            raise Invalid(refusal.text, feedback_id_of(raw)) from None

    @abstractmethod
    async def _round(self, jobs: list[K], outcomes: list[Outcome | None]) -> list[K]:
        """Run one round (one job per order key); return the jobs to try in the next."""

    def _result_for(
        self, envelope: Envelope, code: int, text: str, feedback_id: str | None = None
    ) -> dict[str, Any]:
        """A result without an effect: a refusal or a failure."""
        return self.result_model(
            error=code,
            error_text=text,
            feedback_id=feedback_id,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
        ).model_dump(mode="json")

    async def _run(self, jobs: list[K], outcomes: list[Outcome | None]) -> None:
        for _ in range(MAX_ROUNDS):
            if not jobs:
                return
            current, later = one_per_key(jobs)
            retried = await self._round(current, outcomes)
            jobs = sorted([*retried, *later], key=lambda job: job.index)
        for job in jobs:
            outcomes[job.index] = Outcome(result={}, retry="concurrent writes did not settle")

    async def _landed(
        self,
        planned: Sequence[tuple[K, W]],
        write: Callable[[list[W]], Awaitable[list[WriteStatus]]],
        outcomes: list[Outcome | None],
    ) -> list[K]:
        """Hand the planned writes to the store; answer those that landed, return the jobs
        whose write met a concurrent change (to plan again next round)."""
        if not planned:
            return []
        statuses = await write([w for _, w in planned])
        conflicts, landed_before = [], []
        for (job, planned_write), status in zip(planned, statuses, strict=True):
            if status == "applied":
                outcomes[job.index] = Outcome(
                    planned_write.result, planned_write.events, dedup_id=job.dedup_id
                )
            elif status == "landed_before":
                landed_before.append(job)
            else:
                conflicts.append(job)
        await self._answer_as_recorded(landed_before, outcomes)
        return conflicts

    async def _answer_as_recorded(self, jobs: list[K], outcomes: list[Outcome | None]) -> None:
        """Commands an earlier owner had applied: the ledger holds what they answer."""
        ids = [job.dedup_id for job in jobs if job.dedup_id is not None]
        claims = await self._stores.ledger.claim(ids, self._owner) if ids else {}
        for job in jobs:
            claim = claims.get(job.dedup_id) if job.dedup_id else None
            if isinstance(claim, Answered):
                outcomes[job.index] = claimed_outcome(claim, job.dedup_id)
            else:  # the record is not there yet: come back for it
                outcomes[job.index] = Outcome(result={}, defer="an earlier owner's answer")

    async def _guarded(
        self,
        jobs: list[K],
        outcomes: list[Outcome | None],
        step: Callable[[K], Awaitable[None]],
    ) -> list[K]:
        """Run `step` on each job; a refusal answers that job and drops it from the round."""
        kept = []
        for job in jobs:
            try:
                await step(job)
                kept.append(job)
            except Refusal as refusal:
                outcomes[job.index] = self._refused_job(job, refusal)
        return kept

    def _refused_job(self, job: K, refusal: Refusal) -> Outcome:
        """The 4xx answer to a job that parsed: it echoes the command's `feedback_id`."""
        return self._refused(job.envelope, job.dedup_id, refusal, job.command.feedback_id)

    def _refused(
        self,
        envelope: Envelope,
        dedup_id: str | None,
        refusal: Refusal,
        feedback_id: str | None = None,
        dead_letter: bool = False,
    ) -> Outcome:
        """A 4xx answer; a body that could not even be parsed is also dead-lettered."""
        result = self._result_for(envelope, refusal.code, refusal.text, feedback_id)
        return Outcome(
            result=result, dead_letter=refusal.text if dead_letter else None, dedup_id=dedup_id
        )
