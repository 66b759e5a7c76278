"""What a batch sends once it is decided: each command's answer and events, or the command
itself again (to a retry queue, or to `<queue>.dead`); a deferred command sends nothing yet.

Which of these it is follows from the type of the command's outcome; here results and events
are serialized, once, straight from their models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from worker.contract.common import ResultModel
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
from worker.observability import COMMANDS, DEAD_LETTERS, DEFERRED, RETRIES
from worker.runtime.delivery import Delivery
from worker.runtime.publisher import Outgoing
from worker.runtime.topology import Route
from worker.settings import Settings

log = logging.getLogger("worker.replies")

ATTEMPT_HEADER = "x-attempt"
ORIGINAL_USER_HEADER = "x-original-user-id"
REASON_HEADER = "x-dead-letter-reason"


class FailureAnswer(Protocol):
    def __call__(self, envelope: Envelope, code: int, text: str) -> ResultModel: ...


class Replies:
    """Turns a decided batch into the messages to publish, for one route."""

    def __init__(self, route: Route, settings: Settings, failure: FailureAnswer) -> None:
        self._route = route
        self._settings = settings
        self._failure = failure

    def envelope(self, delivery: Delivery) -> Envelope:
        """The command as the domain sees it; the producer's user survives a republish."""
        attempt = delivery.headers.get(ATTEMPT_HEADER, 0)
        return Envelope(
            body=delivery.body,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            user_id=producer_user(delivery, self._settings.broker_user),
            reply_to=delivery.reply_to,
            attempt=attempt if isinstance(attempt, int) else 0,
        )

    def messages(
        self,
        deliveries: Sequence[Delivery],
        envelopes: Sequence[Envelope],
        outcomes: Sequence[Outcome],
    ) -> list[Outgoing]:
        messages: list[Outgoing] = []
        for delivery, envelope, outcome in zip(deliveries, envelopes, outcomes, strict=True):
            messages += self._sent(delivery, envelope, outcome)
        return messages

    def count(self, envelopes: Sequence[Envelope], outcomes: Sequence[Outcome]) -> None:
        """Answered commands by code; those sent back are counted in RETRIES, those carried to
        the next batch in DEFERRED."""
        for outcome in outcomes:
            match outcome:
                case Answered(result) | Refused(result=result) | GaveUp(result):
                    code, replayed = result.error, False
                case Replayed(result):
                    code, replayed = result.error, True
                case Deferred():
                    DEFERRED.labels(self._route.queue).inc()
                    continue
                case _:
                    continue
            COMMANDS.labels(self._route.queue, str(code), str(replayed).lower()).inc()

    def _sent(self, delivery: Delivery, envelope: Envelope, outcome: Outcome) -> list[Outgoing]:
        """What one command sends: its answer (with its events, or with a copy of it to
        `<queue>.dead`), or the command itself again, for later."""
        match outcome:
            case Answered(result, events):
                return [*self._answer(delivery, result), *map(self._event, events)]
            case Refused(error, result, dead_letter=True):
                dead = self._dead_letter(delivery, envelope, error.text)
                return [*self._answer(delivery, result), dead]
            case Refused(result=result) | Replayed(result):
                return self._answer(delivery, result)
            case Deferred():  # carried to the next batch, unacked: nothing to send yet
                return []
            case Failed(reason):  # with retries left: `given_up` settled the others
                RETRIES.labels(self._route.queue).inc()
                attempt = envelope.attempt + 1
                queue = self._route.retry_queue(attempt)
                return [self._copy(delivery, envelope, queue, "", reason, attempt)]
            case GaveUp(result, reason):
                return [
                    *self._answer(delivery, result),
                    self._dead_letter(delivery, envelope, reason),
                ]

    def given_up(self, envelope: Envelope, outcome: Outcome) -> Outcome:
        """The give-up rule, in one place: a failure with its retries spent is answered 500
        and dead-lettered, and the answer is recorded for every later copy (GaveUp); any other
        outcome stays as it is."""
        if not isinstance(outcome, Failed) or envelope.attempt < self._settings.retry_max_attempts:
            return outcome
        text = f"internal error after {envelope.attempt + 1} attempts: {outcome.reason}"
        return GaveUp(self._failure(envelope, 500, text), text)

    def _answer(self, delivery: Delivery, result: ResultModel) -> list[Outgoing]:
        """The answer, to `reply_to` or else the route's result queue; none without either."""
        routing_key = delivery.reply_to or self._route.result_queue
        if not routing_key:
            return []
        return [
            Outgoing(
                routing_key=routing_key,
                body=result.encode(),
                correlation_id=delivery.correlation_id or delivery.message_id,
            )
        ]

    def _event(self, event: Event) -> Outgoing:
        return Outgoing(
            routing_key=event.event,
            body=event.encode(),
            exchange=self._settings.events_exchange,
        )

    def _dead_letter(self, delivery: Delivery, envelope: Envelope, reason: str) -> Outgoing:
        DEAD_LETTERS.labels(self._route.queue).inc()
        log.warning(
            "dead-lettered",
            extra={
                "queue": self._route.queue,
                "message_id": delivery.message_id,
                "reason": reason[:512],
            },
        )
        exchange = self._settings.dead_letter_exchange
        return self._copy(
            delivery, envelope, self._route.queue, exchange, reason, envelope.attempt + 1
        )

    def _copy(
        self,
        delivery: Delivery,
        envelope: Envelope,
        routing_key: str,
        exchange: str,
        reason: str,
        attempt: int,
    ) -> Outgoing:
        """The command again, for a retry queue or `<queue>.dead`.

        The worker republishes under its own broker user, so the producer's validated user
        travels in a header that the worker trusts only on messages published as itself.
        """
        headers = vouched_headers(
            delivery, envelope.user_id, {ATTEMPT_HEADER: attempt, REASON_HEADER: reason[:512]}
        )
        return Outgoing(
            routing_key=routing_key,
            body=delivery.body,
            exchange=exchange,
            correlation_id=delivery.correlation_id,
            message_id=delivery.message_id,
            reply_to=delivery.reply_to,
            user_id=self._settings.broker_user,
            headers=headers,
        )


def producer_user(delivery: Delivery, broker_user: str) -> str | None:
    """The broker user that published the command, as RabbitMQ vouched for it; on a copy the
    worker republished under its own user, the producer's user that the copy carries."""
    if delivery.user_id == broker_user and ORIGINAL_USER_HEADER in delivery.headers:
        return str(delivery.headers[ORIGINAL_USER_HEADER]) or None
    return delivery.user_id


def vouched_headers(
    delivery: Delivery, producer: str | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The headers of a copy the worker republishes under its own broker user: the producer's
    user travels in ORIGINAL_USER_HEADER, always written (empty for "no user"), so a
    producer's own copy of that header never survives into a copy the worker vouches for."""
    return {**delivery.headers, **(extra or {}), ORIGINAL_USER_HEADER: producer or ""}
