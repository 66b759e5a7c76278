"""The answers to a backfill's commands, collected by correlation id into the checkpoint.

Commands ask for their answer on a reply queue of the backfill's own (`reply_to`), named by
its identity and durable, so the answers of a run that crashed wait there for `--resume`.
Answers are matched to lines by their correlation id (the line's message id), so copies of
one command (a re-published line) count once, and answers that are not this backfill's are
ignored. The run acknowledges them in groups after each checkpoint (see `checkpoint`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiormq.abc import DeliveredMessage

from worker.backfill.checkpoint import Checkpoint
from worker.backfill.identity import line_of


def reply_queue_name(identity: str) -> str:
    return f"profile-worker.backfill.{identity}"


class Answers:
    def __init__(
        self, checkpoint: Checkpoint, identity: str, on_change: Callable[[], None]
    ) -> None:
        self._checkpoint = checkpoint
        self._identity = identity
        self._on_change = on_change
        self._expected = bytearray(len(checkpoint.answered))
        self._arrived = asyncio.Event()
        self.expected = 0
        self.done = 0
        self.last_tag: int | None = None
        """The delivery tag of the newest answer taken in, to acknowledge after a save."""

    @property
    def remaining(self) -> int:
        return self.expected - self.done

    def expect(self, line: int) -> None:
        """`line`'s command asked for an answer (in this run or an earlier one)."""
        if self._expected[line]:
            return
        self._expected[line] = 1
        self.expected += 1
        if self._checkpoint.answered[line]:
            self.done += 1

    async def on_message(self, message: DeliveredMessage) -> None:
        """Take one answer in; acknowledged later, once a checkpoint holds it."""
        self.last_tag = message.delivery_tag
        properties = message.header.properties
        line = line_of(properties.correlation_id, self._identity)
        answered = self._checkpoint.answered
        if line is None or line >= len(answered) or answered[line]:
            return
        answered[line] = 1
        error, text = _outcome(message.body)
        if error:
            self._checkpoint.refusals[line] = (error, text)
        if self._expected[line]:
            self.done += 1
        self._arrived.set()
        self._on_change()

    async def wait(self, idle_seconds: float) -> bool:
        """Until every expected answer is in (True), or none came for `idle_seconds`."""
        while self.remaining > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), idle_seconds)
            except TimeoutError:
                return False
        return True


def _outcome(body: bytes) -> tuple[int, str]:
    """`error` and `error_text` of an answer; one that is not a result counts as a failure."""
    try:
        result = orjson.loads(body)
        return int(result["error"]), str(result.get("error_text", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 500, "the answer is not a result: " + body[:200].decode(errors="replace")
