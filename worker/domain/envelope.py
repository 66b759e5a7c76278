"""A command as the domain sees it arrive, and what the runtime should do with it after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
class Outcome:
    """The answer to one command.

    `retry` names a transient failure: the runtime retries later and answers 500 only once
    the retry budget is spent. `defer` names why the command comes back later without an
    answer and without spending that budget (a copy decided elsewhere right now).
    `dead_letter` names why a copy goes to `<queue>.dead`. `dedup_id` is the ledger entry to
    mark done once the answer is published; `replayed`, an answer the ledger already had.
    """

    result: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    retry: str | None = None
    defer: str | None = None
    dead_letter: str | None = None
    dedup_id: str | None = None
    replayed: bool = False

    @property
    def final(self) -> bool:
        """Answered now, rather than sent back to the queue for later."""
        return self.retry is None and self.defer is None

    @property
    def refused(self) -> bool:
        """A 4xx answer decided now."""
        return self.final and not self.replayed and 400 <= self.code < 500

    @property
    def code(self) -> int:
        value = self.result.get("error", 500)
        return value if isinstance(value, int) else 500
