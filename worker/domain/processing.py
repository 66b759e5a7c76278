"""What every command processor shares: refusals, the inbox record of them, and rounds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from worker.contract.common import ResultModel, feedback_id_of, parse_json_object
from worker.domain.envelope import Envelope, Outcome
from worker.domain.ports import Inbox, InboxEntry, Store
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


K = TypeVar("K", bound=Keyed)
C = TypeVar("C")


def one_per_key(jobs: Sequence[K]) -> tuple[list[K], list[K]]:
    """The first job of each order key now; the rest, in order, for later rounds."""
    seen: set[str] = set()
    now: list[K] = []
    later: list[K] = []
    for job in jobs:
        (later if job.order_key in seen else now).append(job)
        seen.add(job.order_key)
    return now, later


async def remember_refusals(inbox: Inbox, outcomes: Sequence[Outcome | None], at: datetime) -> None:
    """Store 4xx answers so a redelivery gets the same answer without re-evaluation."""
    entries = [
        InboxEntry(o.dedup_id, "pending", o.result)
        for o in outcomes
        if o is not None and o.dedup_id and 400 <= o.code < 500
    ]
    if entries:
        await inbox.begin(entries, at)


async def mark_done(inbox: Inbox, outcomes: Sequence[Outcome]) -> None:
    """Mark answered commands done in the inbox; call after their answers are published."""
    finished = [o.dedup_id for o in outcomes if o.dedup_id and not o.retry and not o.replayed]
    if finished:
        await inbox.finish(finished)


class CommandProcessor(ABC, Generic[K]):
    """The life of a batch of commands that change data (imports, relation commands).

    Commands with a message id go through the dedup inbox: one already answered is answered
    again with its stored result; a refusal is remembered. The rest run in rounds of one
    command per order key, so later commands on the same key see the effect of earlier ones.
    """

    dedup_prefix: str
    result_model: type[ResultModel]

    def __init__(self, store: Store, clock: Clock, max_message_bytes: int) -> None:
        self._store = store
        self._clock = clock
        self._max_message_bytes = max_message_bytes

    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        dedup_ids = [
            f"{self.dedup_prefix}:{e.message_id}" if e.message_id else None for e in envelopes
        ]
        known = await self._store.lookup([d for d in dedup_ids if d is not None])
        jobs: list[K] = []
        for index, (envelope, dedup_id) in enumerate(zip(envelopes, dedup_ids, strict=True)):
            entry = known.get(dedup_id) if dedup_id else None
            if entry is not None and entry.state == "done":
                outcomes[index] = Outcome(result=entry.result, replayed=True)
                continue
            try:
                jobs.append(self._job(index, envelope, dedup_id, entry))
            except Invalid as refusal:
                outcomes[index] = self._refused(envelope, dedup_id, refusal, refusal.feedback_id)
            except InvalidCommand as refusal:
                outcomes[index] = self._refused(envelope, dedup_id, refusal, dead_letter=True)
        await self._run(await self._resume(jobs, outcomes), outcomes)
        await remember_refusals(self._store, outcomes, self._clock())
        return [outcome or Outcome(result={}, retry="not processed") for outcome in outcomes]

    async def complete(self, outcomes: Sequence[Outcome]) -> None:
        """Mark answered commands done in the inbox; call after their answers are published."""
        await mark_done(self._store, outcomes)

    def failure(self, envelope: Envelope, code: int, text: str) -> dict[str, Any]:
        """The result for a command that cannot be processed at all (e.g. retries spent)."""
        return self._result_for(envelope, code, text)

    @abstractmethod
    def _job(
        self, index: int, envelope: Envelope, dedup_id: str | None, entry: InboxEntry | None
    ) -> K:
        """Parse and validate one command; raise Invalid (or InvalidCommand if unparsable)."""

    def _decoded(self, envelope: Envelope, decode: Callable[[dict[str, Any]], C]) -> C:
        """The body decoded by `decode`: InvalidCommand if it is not a JSON object (to be
        dead-lettered), Invalid, echoing its `feedback_id`, if it does not validate."""
        raw = parse_json_object(envelope.body, self._max_message_bytes)
        try:
            return decode(raw)
        except InvalidCommand as refusal:
            raise Invalid(refusal.text, feedback_id_of(raw)) from None

    async def _resume(self, jobs: list[K], outcomes: list[Outcome | None]) -> list[K]:
        """Finish what a crash interrupted before the rounds start; by default nothing."""
        return jobs

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
