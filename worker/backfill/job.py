"""One backfill, top to bottom: read, check or publish with confirms, collect, account.

The checkpoint is saved every `SAVE_INTERVAL_SECONDS` while the run goes and once more however
it ends; answers are acknowledged to the broker only after a save that holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson
from pamqp.commands import Basic

from worker.backfill import checkpoint as checkpoints
from worker.backfill.answers import Answers, reply_queue_name
from worker.backfill.broker import BackfillBroker
from worker.backfill.checkpoint import Checkpoint
from worker.backfill.destination import Destination, to_partitions
from worker.backfill.identity import Content, message_id
from worker.backfill.kinds import Kind
from worker.backfill.publishing import BROKER_GONE, Pipeline
from worker.backfill.report import Outcome, write_errors
from worker.backfill.source import Format, Line, Shaping, read_lines
from worker.runtime.connection import connect
from worker.runtime.partitions import Partitions

SAVE_INTERVAL_SECONDS = 0.5


class Observer(Protocol):
    """Whoever shows the progress (the CLI's progress bars)."""

    def started(self, lines: int, after: int) -> None: ...
    def published(self, line: int, errors: int) -> None: ...
    def answered(self, done: int, expected: int, errors: int) -> None: ...


@dataclass(frozen=True)
class Job:
    file: Path
    source_format: Format
    shaping: Shaping
    kind: Kind
    content: Content
    identity: str
    checkpoint: Path
    errors: Path
    window: int = 2_000
    resume: bool = False
    wait_results: bool = False
    idle_seconds: float = 60.0
    max_message_bytes: int = 1_048_576
    partitions: int | None = None
    """P, to publish straight to the partitions (`--partitioned`); None: to the queue."""

    @property
    def target(self) -> str:
        """Where the lines go, in words."""
        if self.partitions is None:
            return self.kind.queue
        return f"the partitions of {self.kind.queue} ({self.destination.exchange})"

    @property
    def destination(self) -> Destination:
        if self.partitions is None:
            return Destination(self.kind.queue)
        partitions = Partitions(self.kind.queue, self.partitions)
        return to_partitions(partitions, self.kind.order, self.max_message_bytes)


def dry_run(job: Job, observer: Observer) -> Outcome:
    """Check every line against the queue's contract; send nothing, touch no checkpoint."""
    observer.started(job.content.lines, 0)
    refusals: dict[int, tuple[int, str]] = {}
    count = 0
    for line in read_lines(job.file, job.source_format, job.shaping):
        count += 1
        problem = line.problem or job.kind.problem(line.body or {}, job.max_message_bytes)
        if problem:
            refusals[line.number] = (400, problem)
        if count % 1_000 == 0:
            observer.published(line.number, len(refusals))
    observer.published(job.content.lines, len(refusals))
    write_errors(job.errors, refusals)
    return Outcome(lines=count, refusals=refusals)


async def run(job: Job, amqp_url: str, observer: Observer) -> Outcome:
    """Publish the lines after the checkpoint; with `wait_results`, collect the answers."""
    with checkpoints.exclusive(job.file):
        state = _starting_state(job)
        connection = await connect(amqp_url, f"profile-worker backfill {job.file.name}")
        backfill = _Backfill(job, state, BackfillBroker(connection), observer)
        try:
            return await backfill.run()
        finally:
            checkpoints.save(job.checkpoint, state)
            await connection.close()


def _starting_state(job: Job) -> Checkpoint:
    if job.resume:
        state = checkpoints.resumed(
            job.checkpoint, job.identity, job.content.digest, job.kind.queue
        )
    else:
        state = Checkpoint(job.identity, job.content.digest, job.kind.queue)
    if not job.wait_results:
        state.ask_from = None
    elif state.ask_from is None:
        state.ask_from = state.confirmed_through + 1
    return state.sized(job.content.lines)


class _Backfill:
    def __init__(
        self, job: Job, state: Checkpoint, broker: BackfillBroker, observer: Observer
    ) -> None:
        self._job = job
        self._state = state
        self._broker = broker
        self._observer = observer
        self._local: dict[int, tuple[int, str]] = {}
        self._answers = Answers(state, job.identity, self._on_answer)
        self._reply_to = reply_queue_name(job.identity) if job.wait_results else None
        self._published = self._lines = self._skipped = 0

    async def run(self) -> Outcome:
        destination = self._job.destination
        channel = await self._broker.publishing(destination)
        if self._reply_to:
            await self._broker.consume_replies(self._reply_to, self._answers.on_message)
        pipeline = Pipeline(channel, destination, self._job.window, self._confirmed)
        saving = asyncio.create_task(self._keep_saving())
        try:
            await self._publish(pipeline)
            await pipeline.flush()
            await self._save()
            if self._reply_to and await self._collect():
                await self._broker.delete_replies()
        finally:
            pipeline.abandon()
            saving.cancel()
        return self._outcome()

    async def _publish(self, pipeline: Pipeline) -> None:
        after = self._state.confirmed_through
        self._observer.started(self._job.content.lines, after)
        for line in read_lines(self._job.file, self._job.source_format, self._job.shaping):
            self._lines += 1
            if line.body is None:
                self._local[line.number] = (400, f"not sent: {line.problem}")
                if line.number > after:
                    pipeline.passed(line.number)
                continue
            if self._asks(line.number):
                self._answers.expect(line.number)
            if line.number <= after:
                self._skipped += 1
                continue
            await pipeline.publish(line.number, orjson.dumps(line.body), self._properties(line))

    def _asks(self, number: int) -> bool:
        """Whether the line's command asked (now or in an earlier run) for its answer."""
        ask_from = self._state.ask_from
        return self._reply_to is not None and ask_from is not None and number >= ask_from

    def _properties(self, line: Line) -> Basic.Properties:
        own = message_id(self._job.identity, line.number)
        return Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=line.message_id or own,
            correlation_id=own,
            reply_to=self._reply_to,
        )

    async def _collect(self) -> bool:
        """Wait for the answers; True when every expected one came."""
        self._on_answer()
        complete = await self._answers.wait(self._job.idle_seconds)
        await self._save()
        return complete

    def _confirmed(self, line: int, count: int) -> None:
        self._state.confirmed_through = max(self._state.confirmed_through, line)
        self._published += count
        self._observer.published(self._state.confirmed_through, self._errors())

    def _on_answer(self) -> None:
        self._observer.answered(self._answers.done, self._answers.expected, self._errors())

    def _errors(self) -> int:
        return len(self._local) + len(self._state.refusals)

    async def _keep_saving(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL_SECONDS)
            with contextlib.suppress(*BROKER_GONE):  # the run itself reports a lost broker
                await self._save()

    async def _save(self) -> None:
        """Save, then acknowledge the answers the saved checkpoint holds."""
        tag = self._answers.last_tag
        checkpoints.save(self._job.checkpoint, self._state)
        await self._broker.acknowledge(tag)

    def _outcome(self) -> Outcome:
        refusals = {**self._state.refusals, **self._local}
        if self._reply_to or refusals:
            write_errors(self._job.errors, refusals)
        return Outcome(
            lines=self._lines,
            skipped=self._skipped,
            published=self._published,
            refusals=refusals,
            waited=self._reply_to is not None,
            expected=self._answers.expected,
            answered=self._answers.done,
            applied=self._state.answered.count(1) - len(self._state.refusals),
        )
