"""What a batch sends once it is decided: each command's answer and events, or the command
itself again (to a retry queue, back for later, or to `<queue>.dead`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from worker.domain.envelope import Envelope, Outcome
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
    def __call__(self, envelope: Envelope, code: int, text: str) -> dict[str, Any]: ...


class Replies:
    """Turns a decided batch into the messages to publish, for one route."""

    def __init__(self, route: Route, settings: Settings, failure: FailureAnswer) -> None:
        self._route = route
        self._settings = settings
        self._failure = failure

    def envelope(self, delivery: Delivery) -> Envelope:
        """The command as the domain sees it; the producer's user survives a republish."""
        headers = delivery.headers
        user_id = delivery.user_id
        if user_id == self._settings.broker_user and ORIGINAL_USER_HEADER in headers:
            user_id = str(headers[ORIGINAL_USER_HEADER])
        attempt = headers.get(ATTEMPT_HEADER, 0)
        return Envelope(
            body=delivery.body,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            user_id=user_id,
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
            back = self._sent_back(envelope, outcome)
            if back:
                queue, attempt, why = back
                (DEFERRED if outcome.defer else RETRIES).labels(self._route.queue).inc()
                messages.append(self._copy(delivery, envelope, queue, "", why, attempt))
                continue
            result, reason = outcome.result, outcome.dead_letter
            if outcome.retry:
                attempts = envelope.attempt + 1
                text = f"internal error after {attempts} attempts: {outcome.retry}"
                result, reason = self._failure(envelope, 500, text), text
            answer = self._answer(delivery, result)
            if answer.routing_key:
                messages.append(answer)
            if not outcome.replayed:
                messages += [self._event(event) for event in outcome.events]
            if reason:
                messages.append(self._dead_letter(delivery, envelope, reason))
        return messages

    def count(self, envelopes: Sequence[Envelope], outcomes: Sequence[Outcome]) -> None:
        """Answered commands by code; those sent back are counted in RETRIES or DEFERRED."""
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if self._sent_back(envelope, outcome):
                continue
            code = 500 if outcome.retry else outcome.code
            COMMANDS.labels(self._route.queue, str(code), str(outcome.replayed).lower()).inc()

    def _sent_back(self, envelope: Envelope, outcome: Outcome) -> tuple[str, int, str] | None:
        """Where a command goes unanswered, the attempt it then carries, and why: a transient
        failure with retry budget left, or a deferral (which spends none); None when it is
        answered now."""
        settings = self._settings
        if outcome.defer:
            queue = self._route.retry_queue(1) if settings.retry_max_attempts else None
            return queue or self._route.queue, envelope.attempt, outcome.defer
        if outcome.retry and envelope.attempt < settings.retry_max_attempts:
            attempt = envelope.attempt + 1
            return self._route.retry_queue(attempt), attempt, outcome.retry
        return None

    def _answer(self, delivery: Delivery, result: dict[str, Any]) -> Outgoing:
        return Outgoing(
            routing_key=delivery.reply_to or self._route.result_queue or "",
            body=orjson.dumps(result),
            correlation_id=delivery.correlation_id or delivery.message_id,
        )

    def _event(self, event: dict[str, Any]) -> Outgoing:
        return Outgoing(
            routing_key=str(event["event"]),
            body=orjson.dumps(event),
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
        headers: dict[str, Any] = {
            **delivery.headers,
            ATTEMPT_HEADER: attempt,
            REASON_HEADER: reason[:512],
        }
        if envelope.user_id:
            headers[ORIGINAL_USER_HEADER] = envelope.user_id
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
