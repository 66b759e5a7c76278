"""A command as the domain sees it arrive, and what the runtime should do with it after.

The outcome is decided by the domain from the exception tree (`worker.errors`) and read by the
runtime by its type: answered, refused, answered again, failed for now, or deferred. Results
and events stay models until the runtime sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.errors import Refusal


@dataclass(frozen=True)
class Envelope:
    """The body and the transport facts the contract relies on, without AMQP types.

    `user_id` is set only when the broker vouched for it. `attempt` counts deliveries that
    ended in a transient failure before this one.
    """

    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    reply_to: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class Answered:
    """Decided now, its effect (if any) in the store: answer `result`, publish `events`.

    Also a command whose previous owner died after its write landed: its recorded answer and
    events. `command_id` is the inbox record to mark done once they are published.
    """

    result: ResultModel
    events: tuple[Event, ...] = ()
    command_id: str | None = None


@dataclass(frozen=True)
class Refused:
    """Refused now with `error`'s 4xx code, and nothing changed; `result` is the answer.

    `dead_letter`: the body is not even a command, so the message is also copied to
    `<queue>.dead` for a human to look at. `command_id` as for `Answered`.
    """

    error: Refusal
    result: ResultModel
    command_id: str | None = None
    dead_letter: bool = False


@dataclass(frozen=True)
class Replayed:
    """A copy of a command answered before (recorded in the inbox, or its first copy in this
    batch): the same `result` again, with no events and nothing to record."""

    result: ResultModel


@dataclass(frozen=True)
class Failed:
    """A transient failure: the command is tried again later through the retry queues and
    answered 500 (and dead-lettered) once the retry budget is spent. `reason` is for headers
    and logs."""

    reason: str


@dataclass(frozen=True)
class GaveUp:
    """A failure with its retries spent: answer `result` (a 500) and dead-letter the command.
    The answer is recorded, so every later copy of the command gets it too. `reason` is for
    headers and logs."""

    result: ResultModel
    reason: str


@dataclass(frozen=True)
class Deferred:
    """Not decided in this batch: it waits for an earlier command on its profile or relation,
    or for another owner deciding it right now. It comes first in the consumer's next batch,
    unanswered and unacked, without spending the retry budget. `reason` is for logs."""

    reason: str


Outcome = Answered | Refused | Replayed | Failed | GaveUp | Deferred
