"""The life of a batch of commands that change data (imports, relation commands).

A batch comes from one partition, and one process consumes a partition at a time, so this
process is the only live one deciding its commands. A processor reads top to bottom:

1. `take_over`: what earlier owners decided of the batch's commands (`worker.store.inbox`):
   a command decided before gets the recorded answer, one whose earlier owner's write did not
   land is decided again on its target, and copies inside one batch follow their first;
2. decode each command admitted (a command that does not validate is refused);
3. check each once (catalog, authorization, fields: what needs no stored state);
4. `rounds`: look up, plan, and `write` through the store; a command whose profile or
   relation an earlier command of the batch still has in hand waits for the next round, so
   later commands on one target see the effect of earlier ones whichever key addresses them;
5. `settled`: every command's outcome.

`Batch` holds the outcomes between the stages; it never calls into a processor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

from worker.contract.common import ResultModel, feedback_id_of, parse_json_object
from worker.contract.events import Event
from worker.domain.envelope import (
    Answered,
    Deferred,
    Envelope,
    Failed,
    GaveUp,
    Outcome,
    Refused,
    Replayed,
)
from worker.domain.shared.ports import Inbox, Recorded, Resume, Stores, WriteStatus
from worker.errors import InvalidCommand, PartitionLost, Refusal

MAX_ROUNDS = 8

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Admitted:
    """A command this process decides now, its body parsed into a JSON object.

    `target` is the document an earlier owner of the command had chosen (see `Resume`).
    """

    index: int
    envelope: Envelope
    raw: dict[str, Any]
    command_id: str | None
    target: str | int | None


class FeedbackId(Protocol):
    @property
    def feedback_id(self) -> str | None: ...


class Job(Protocol):
    """A decoded command on its way through a batch: where it stands, and what its answer
    echoes."""

    @property
    def index(self) -> int: ...
    @property
    def envelope(self) -> Envelope: ...
    @property
    def command_id(self) -> str | None: ...
    @property
    def command(self) -> FeedbackId: ...


class Answering(Protocol):
    """A planned write: what it answers and emits once it lands."""

    @property
    def result(self) -> ResultModel: ...
    @property
    def events(self) -> tuple[Event, ...]: ...


J = TypeVar("J", bound=Job)
W = TypeVar("W", bound=Answering)
W_contra = TypeVar("W_contra", contravariant=True)


class Writer(Protocol[W_contra]):
    """A store port that lands planned writes (`ProfileStore`, `RelationStore`)."""

    async def write(self, writes: Sequence[W_contra]) -> list[WriteStatus]: ...


class Batch:
    """The outcomes of one batch of commands, filled in as each command is decided."""

    def __init__(
        self,
        envelopes: Sequence[Envelope],
        kind: str,
        result_model: type[ResultModel],
        inbox: Inbox,
        max_message_bytes: int,
    ) -> None:
        self._envelopes = envelopes
        self._result_model = result_model
        self._inbox = inbox
        self._max_message_bytes = max_message_bytes
        self._ids = [f"{kind}:{e.message_id}" if e.message_id else None for e in envelopes]
        self._first = first_copies(self._ids)
        self._outcomes: list[Outcome | None] = [None] * len(envelopes)
        self._written = 0
        self._remembered: set[str] = set()

    def refuse(self, job: Job, error: Refusal) -> None:
        """Answer a decoded command with `error`'s 4xx, echoing its `feedback_id`."""
        outcome = self._refused(job.envelope, job.command_id, error, job.command.feedback_id)
        self._outcomes[job.index] = outcome

    def refuse_undecoded(self, admitted: Admitted, error: InvalidCommand) -> None:
        """Answer a command that does not validate, echoing its `feedback_id` if it has one."""
        feedback_id = feedback_id_of(admitted.raw)
        outcome = self._refused(admitted.envelope, admitted.command_id, error, feedback_id)
        self._outcomes[admitted.index] = outcome

    def undecided(self, job: Job) -> bool:
        """Whether the job still waits for a round: its write met a concurrent change, or an
        earlier job has its target in hand."""
        return self._outcomes[job.index] is None

    def rounds(self) -> Iterator[int]:
        """Round numbers while rounds make progress, at most MAX_ROUNDS: the caller runs a
        round between two of them. A round that decided nothing and wrote nothing ends them.

        The bound keeps one batch from spinning on a target that other processes keep
        changing; the commands still waiting come back in the consumer's next batch, ahead
        of what arrived since (`settled`), so they keep their place in queue order."""
        for number in range(MAX_ROUNDS):
            before = (self._decided_count(), self._written)
            yield number
            if (self._decided_count(), self._written) == before:
                return

    async def write(self, planned: Sequence[tuple[J, W]], store: Writer[W]) -> None:
        """Hand the planned writes to the store and answer those that applied; a job whose
        write met a concurrent change stays `undecided`, to plan again next round. Refusals
        decided so far are recorded first (see `_remember_refusals`)."""
        if not planned:
            return
        await self._remember_refusals()
        statuses = await store.write([write for _, write in planned])
        self._written += len(planned)
        landed_before = []
        for (job, planned_write), status in zip(planned, statuses, strict=True):
            if status == "applied":
                result, events = planned_write.result, planned_write.events
                self._outcomes[job.index] = Answered(result, events, job.command_id)
            elif status == "landed_before":
                landed_before.append(job)
            elif status == "fenced":
                raise PartitionLost("a later owner of this partition wrote a planned document")
        await self._answer_as_recorded(landed_before)

    async def take_over(self) -> list[Admitted]:
        """What earlier owners decided of these commands (the inbox seals the targets of those
        not done, so a stale owner's write can no longer land); the commands this process
        decides now, parsed.

        The others have their outcome already: one decided before, and a body that is not a
        JSON object (refused and dead-lettered). Copies wait for their first.
        """
        prior = await self._inbox.take_over(list(self._first))
        admitted = []
        for index, envelope in enumerate(self._envelopes):
            command_id = self._ids[index]
            if command_id is not None and self._first[command_id] != index:
                continue
            decided = prior.get(command_id) if command_id else None
            if isinstance(decided, Recorded):
                self._outcomes[index] = self._recorded(envelope, command_id, decided)
                continue
            try:
                raw = parse_json_object(envelope.body, self._max_message_bytes)
            except InvalidCommand as error:
                refused = self._refused(envelope, command_id, error, None, dead_letter=True)
                self._outcomes[index] = refused
                continue
            target = decided.target if isinstance(decided, Resume) else None
            admitted.append(Admitted(index, envelope, raw, command_id, target))
        return admitted

    def _decided_count(self) -> int:
        return sum(outcome is not None for outcome in self._outcomes)

    async def settled(self, waiting: Sequence[Job]) -> list[Outcome]:
        """Every command's outcome, once the rounds are over: the jobs still `waiting` go
        back to the consumer (Deferred, no retry budget spent), refusals are recorded in the
        inbox, and copies follow their first."""
        for job in waiting:
            self._outcomes[job.index] = Deferred("an earlier command on its target comes first")
        await self._remember_refusals()
        for index, command_id in enumerate(self._ids):
            if command_id is not None and self._first[command_id] != index:
                self._outcomes[index] = as_copy(self._outcomes[self._first[command_id]])
        return [outcome or Failed("not processed") for outcome in self._outcomes]

    async def _remember_refusals(self) -> None:
        """Record the refusals decided so far, before any later command's write: after a crash
        the next owner must answer them as they were decided, not decide them again on a
        state that later commands have changed (a 404 `detach` would find the relation a
        later `strengthen` created)."""
        refusals = {
            o.command_id: o.result
            for o in self._outcomes
            if isinstance(o, Refused) and o.command_id and o.command_id not in self._remembered
        }
        if refusals:
            await self._inbox.remember(refusals)
            self._remembered.update(refusals)

    def _recorded(self, envelope: Envelope, command_id: str | None, recorded: Recorded) -> Outcome:
        """A recorded answer; one that may never have been sent, and refuses a body that does
        not parse, goes with its dead-letter copy, as when it was decided."""
        outcome = recorded_outcome(recorded, command_id, self._result_model)
        if not recorded.unsent:
            return outcome
        try:
            parse_json_object(envelope.body, self._max_message_bytes)
        except InvalidCommand as error:
            result = self._result_model.model_validate(recorded.result)
            return Refused(error, result, command_id, dead_letter=True)
        return outcome

    async def _answer_as_recorded(self, jobs: list[J]) -> None:
        """Commands an earlier owner had applied: the inbox holds what they answer."""
        ids = [job.command_id for job in jobs if job.command_id is not None]
        prior = await self._inbox.take_over(ids) if ids else {}
        for job in jobs:
            decided = prior.get(job.command_id) if job.command_id else None
            if isinstance(decided, Recorded):
                outcome = recorded_outcome(decided, job.command_id, self._result_model)
            else:  # the record is not there yet: come back for it
                outcome = Deferred("an earlier owner's answer")
            self._outcomes[job.index] = outcome

    def _refused(
        self,
        envelope: Envelope,
        command_id: str | None,
        error: Refusal,
        feedback_id: str | None,
        dead_letter: bool = False,
    ) -> Refused:
        model, code, text = self._result_model, error.code, error.text
        result = effectless_result(model, envelope, code, text, feedback_id)
        return Refused(error, result, command_id, dead_letter)


class CommandProcessor:
    """What the import and relation processors share besides their own `process`: marking
    answered commands done, and the answer to a command that cannot be decided at all."""

    kind: ClassVar[str]
    result_model: ClassVar[type[ResultModel]]

    def __init__(self, stores: Stores, clock: Clock, max_message_bytes: int) -> None:
        self._stores = stores
        self._clock = clock
        self._max_message_bytes = max_message_bytes

    def _batch(self, envelopes: Sequence[Envelope]) -> Batch:
        inbox, limit = self._stores.inbox, self._max_message_bytes
        return Batch(envelopes, self.kind, self.result_model, inbox, limit)

    async def complete(self, outcomes: Sequence[Outcome]) -> None:
        """Mark answered commands done in the inbox; call after their answers are published.

        A command given up on is recorded with its 500 first, so that a later copy gets the
        same answer instead of being decided afresh."""
        given_up = {
            f"{self.kind}:{o.result.message_id}": o.result
            for o in outcomes
            if isinstance(o, GaveUp) and o.result.message_id
        }
        if given_up:
            await self._stores.inbox.remember(given_up)
        finished = [
            o.command_id for o in outcomes if isinstance(o, Answered | Refused) and o.command_id
        ]
        if finished or given_up:
            await self._stores.inbox.finish([*finished, *given_up])

    def failure(self, envelope: Envelope, code: int, text: str) -> ResultModel:
        """The result for a command that cannot be processed at all (e.g. retries spent)."""
        return effectless_result(self.result_model, envelope, code, text)


def effectless_result(
    result_model: type[ResultModel],
    envelope: Envelope,
    code: int,
    text: str,
    feedback_id: str | None = None,
) -> ResultModel:
    """A result without an effect: a refusal or a failure."""
    return result_model(
        error=code,
        error_text=text,
        feedback_id=feedback_id,
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
    )


def first_copies(command_ids: Sequence[str | None]) -> dict[str, int]:
    """The position of the first copy of each command id in a batch."""
    first: dict[str, int] = {}
    for index, command_id in enumerate(command_ids):
        if command_id is not None:
            first.setdefault(command_id, index)
    return first


def recorded_outcome(
    recorded: Recorded, command_id: str | None, result_model: type[ResultModel]
) -> Outcome:
    """The outcome of a command decided before: the recorded answer, read back into the
    processor's result model."""
    result = result_model.model_validate(recorded.result)
    if recorded.events or recorded.unsent:  # never sent, perhaps: answer (and publish) for it
        events = tuple(Event.model_validate(event) for event in recorded.events)
        return Answered(result, events, command_id)
    return Replayed(result)


def as_copy(outcome: Outcome | None) -> Outcome | None:
    """What a later copy of a command in the same batch gets: its first copy's answer, without
    its events being published again or anything recorded (a refusal stays one, so a body
    that is not a command is dead-lettered with each copy)."""
    if isinstance(outcome, Answered):
        return Replayed(outcome.result)
    if isinstance(outcome, Refused):
        return replace(outcome, command_id=None)
    return outcome
