"""The batch consumer: the one place that acks.

It gathers up to `batch_max_size` messages or `batch_max_wait_ms`, hands the domain a batch of
envelopes, publishes every answer with confirms, marks the inbox done, and only then acks the
whole batch with one `multiple=True` ack. While the database is unreachable it holds the batch
(unacked, so prefetch stops the flow) and tries again with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue

from worker.domain.envelope import Envelope, Outcome
from worker.errors import StoreUnavailable
from worker.observability import (
    BATCH_SECONDS,
    BATCH_SIZE,
    COMMANDS,
    DEAD_LETTERS,
    DEFERRED,
    RETRIES,
    STORE_UP,
)
from worker.runtime.publisher import Outgoing, Publisher
from worker.runtime.topology import Route
from worker.runtime.waiting import sleep_unless
from worker.settings import Settings

log = logging.getLogger("worker.consumer")

ATTEMPT_HEADER = "x-attempt"
ORIGINAL_USER_HEADER = "x-original-user-id"
REASON_HEADER = "x-dead-letter-reason"


class Processor(Protocol):
    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]: ...
    async def complete(self, outcomes: Sequence[Outcome]) -> None: ...
    def failure(self, envelope: Envelope, code: int, text: str) -> dict[str, Any]: ...


class StorePing(Protocol):
    async def ping(self) -> None: ...


class BatchConsumer:
    def __init__(
        self,
        queue: AbstractQueue,
        route: Route,
        processor: Processor,
        publisher: Publisher,
        topology_exchanges: tuple[AbstractExchange, AbstractExchange],
        store: StorePing,
        settings: Settings,
        *,
        max_wait_ms: int | None = None,
    ) -> None:
        self._queue = queue
        self._route = route
        self._processor = processor
        self._publisher = publisher
        self._events, self._dead_letter = topology_exchanges
        self._store = store
        self._settings = settings
        self._max_wait_ms = settings.batch_max_wait_ms if max_wait_ms is None else max_wait_ms

    async def run(self, halt: asyncio.Event) -> None:
        """Consume until `halt` is set; the batch in hand is always finished first."""
        buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await self._queue.consume(buffer.put, no_ack=False)
        try:
            while not halt.is_set():
                batch = await self._gather(buffer, halt)
                if batch:
                    await self._handle(batch, halt)
        finally:
            if not self._queue.channel.is_closed:
                await self._queue.cancel(tag)

    async def _gather(
        self, buffer: asyncio.Queue[AbstractIncomingMessage], halt: asyncio.Event
    ) -> list[AbstractIncomingMessage]:
        first = asyncio.ensure_future(buffer.get())
        halted = asyncio.ensure_future(halt.wait())
        await asyncio.wait({first, halted}, return_when=asyncio.FIRST_COMPLETED)
        halted.cancel()
        if not first.done():
            first.cancel()
            return []
        batch = [first.result()]
        deadline = time.monotonic() + self._max_wait_ms / 1000
        while len(batch) < self._settings.batch_max_size:
            if not buffer.empty():
                batch.append(buffer.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(buffer.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _handle(self, batch: list[AbstractIncomingMessage], halt: asyncio.Event) -> None:
        started = time.monotonic()
        envelopes = [self._envelope(message) for message in batch]
        outcomes = await self._while_store_up(lambda: self._process(envelopes), halt)
        if outcomes is None:
            return  # halted during an outage: unacked, the broker redelivers
        await self._publisher.publish(self._outgoing(batch, envelopes, outcomes))
        if await self._while_store_up(lambda: self._processor.complete(outcomes), halt) is None:
            return
        await batch[-1].ack(multiple=True)
        self._count(envelopes, outcomes)
        BATCH_SIZE.labels(self._route.queue).observe(len(batch))
        BATCH_SECONDS.labels(self._route.queue).observe(time.monotonic() - started)

    async def _process(self, envelopes: list[Envelope]) -> list[Outcome]:
        """The batch's outcomes; an unexpected failure is narrowed down to its messages."""
        try:
            return await self._processor.process(envelopes)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if len(envelopes) == 1:
                log.exception("command failed", extra={"queue": self._route.queue})
                return [Outcome(result={}, retry=f"{type(exc).__name__}: {exc}")]
        outcomes: list[Outcome] = []
        for envelope in envelopes:
            outcomes += await self._process([envelope])
        return outcomes

    async def _while_store_up(self, step: Any, halt: asyncio.Event) -> Any:
        """Run `step` until it gets past a database outage; None if halted meanwhile."""
        delay = 0.2
        while True:
            try:
                value = await step()
                STORE_UP.set(1)
                return True if value is None else value
            except StoreUnavailable as exc:
                STORE_UP.set(0)
                log.warning("database unavailable; consumption paused", extra={"error": str(exc)})
            while not halt.is_set():
                await sleep_unless(halt, delay)
                delay = min(delay * 2, self._settings.reconnect_max_delay_seconds)
                try:
                    await self._store.ping()
                    break
                except StoreUnavailable:
                    continue
            if halt.is_set():
                return None

    def _envelope(self, message: AbstractIncomingMessage) -> Envelope:
        headers = message.headers or {}
        user_id = message.user_id
        if user_id == self._settings.broker_user and ORIGINAL_USER_HEADER in headers:
            user_id = str(headers[ORIGINAL_USER_HEADER])
        attempt = headers.get(ATTEMPT_HEADER, 0)
        return Envelope(
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            user_id=user_id,
            reply_to=message.reply_to,
            attempt=attempt if isinstance(attempt, int) else 0,
        )

    def _outgoing(
        self,
        batch: list[AbstractIncomingMessage],
        envelopes: list[Envelope],
        outcomes: list[Outcome],
    ) -> list[Outgoing]:
        messages: list[Outgoing] = []
        for message, envelope, outcome in zip(batch, envelopes, outcomes, strict=True):
            back = self._sent_back(envelope, outcome)
            if back:
                queue, attempt, why = back
                (DEFERRED if outcome.defer else RETRIES).labels(self._route.queue).inc()
                messages.append(self._copy(message, envelope, queue, None, why, attempt))
                continue
            result, reason = outcome.result, outcome.dead_letter
            if outcome.retry:
                attempts = envelope.attempt + 1
                text = f"internal error after {attempts} attempts: {outcome.retry}"
                result, reason = self._processor.failure(envelope, 500, text), text
            answer = self._answer(message, result)
            if answer.routing_key:
                messages.append(answer)
            if not outcome.replayed:
                messages += [self._event(event) for event in outcome.events]
            if reason:
                DEAD_LETTERS.labels(self._route.queue).inc()
                log.warning(
                    "dead-lettered",
                    extra={
                        "queue": self._route.queue,
                        "message_id": message.message_id,
                        "reason": reason[:512],
                    },
                )
                attempt = envelope.attempt + 1
                messages.append(
                    self._copy(
                        message, envelope, self._route.queue, self._dead_letter, reason, attempt
                    )
                )
        return messages

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

    def _answer(self, message: AbstractIncomingMessage, result: dict[str, Any]) -> Outgoing:
        return Outgoing(
            routing_key=message.reply_to or self._route.result_queue or "",
            body=orjson.dumps(result),
            correlation_id=message.correlation_id or message.message_id,
        )

    def _event(self, event: dict[str, Any]) -> Outgoing:
        return Outgoing(
            routing_key=str(event["event"]), body=orjson.dumps(event), exchange=self._events
        )

    def _copy(
        self,
        message: AbstractIncomingMessage,
        envelope: Envelope,
        routing_key: str,
        exchange: AbstractExchange | None,
        reason: str,
        attempt: int,
    ) -> Outgoing:
        """The command again, for a retry queue or `<queue>.dead`.

        The worker republishes under its own broker user, so the producer's validated user
        travels in a header that the worker trusts only on messages published as itself.
        """
        headers: dict[str, Any] = {
            **(message.headers or {}),
            ATTEMPT_HEADER: attempt,
            REASON_HEADER: reason[:512],
        }
        if envelope.user_id:
            headers[ORIGINAL_USER_HEADER] = envelope.user_id
        return Outgoing(
            routing_key=routing_key,
            body=message.body,
            exchange=exchange,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            reply_to=message.reply_to,
            user_id=self._settings.broker_user,
            headers=headers,
        )

    def _count(self, envelopes: list[Envelope], outcomes: list[Outcome]) -> None:
        """Answered commands by code; those sent back are counted in RETRIES or DEFERRED."""
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if self._sent_back(envelope, outcome):
                continue
            code = 500 if outcome.retry else outcome.code
            COMMANDS.labels(self._route.queue, str(code), str(outcome.replayed).lower()).inc()
