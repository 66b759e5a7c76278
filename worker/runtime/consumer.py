"""The batch consumer: the one place that acks.

It gathers up to `batch_max_size` messages or `batch_max_wait_ms`, hands the domain a batch of
envelopes, publishes every answer with confirms, marks the inbox done, and only then acks the
batch (one `multiple=True` ack when it settled whole). While the database is unreachable it
holds the batch (unacked, so prefetch stops the flow) and tries again with backoff.

A command the domain defers (it waits for an earlier command on its profile or relation, or for
a version another writer reserved) is carried: it stays unacked and goes first into the next
batch, ahead of everything delivered after it, so queue order holds across batches, and a crash
redelivers it in its place. One carried for longer than CARRY_LIMIT_SECONDS is treated as failed
(the retry queues), so nothing can circle forever.

It consumes on aiormq's channel directly (see `publisher.py` for why).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from aiormq.abc import AbstractChannel

from worker.contract.common import ResultModel
from worker.domain.envelope import Deferred, Envelope, Failed, Outcome
from worker.errors import PartitionLost, StoreUnavailable
from worker.observability import BATCH_SECONDS, BATCH_SIZE
from worker.runtime.delivery import Delivery
from worker.runtime.health import Health
from worker.runtime.publisher import Publisher
from worker.runtime.replies import Replies
from worker.runtime.subscription import Subscription, gather, subscribe
from worker.runtime.topology import Route
from worker.runtime.waiting import sleep_unless
from worker.settings import Settings

log = logging.getLogger("worker.consumer")

CARRY_LIMIT_SECONDS = 600.0
"""Far beyond what a deferral waits for: a revision stranded by a writer that died."""
CARRY_DELAY_SECONDS = (0.05, 1.0)
"""How long carried commands wait for company before they run alone: first, at most."""


class Processor(Protocol):
    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]: ...
    async def complete(self, outcomes: Sequence[Outcome]) -> None: ...
    def failure(self, envelope: Envelope, code: int, text: str) -> ResultModel: ...


class StorePing(Protocol):
    async def ping(self) -> None: ...


class BatchConsumer:
    def __init__(
        self,
        channel: AbstractChannel,
        route: Route,
        processor: Processor,
        publisher: Publisher,
        store: StorePing,
        settings: Settings,
        health: Health,
        *,
        max_wait_ms: int | None = None,
    ) -> None:
        self._channel = channel
        self._route = route
        self._processor = processor
        self._publisher = publisher
        self._replies = Replies(route, settings, processor.failure)
        self._store = store
        self._settings = settings
        self._health = health
        self._max_wait_ms = settings.batch_max_wait_ms if max_wait_ms is None else max_wait_ms
        self.acked = 0
        self._subscription: Subscription | None = None
        self._carried: list[Delivery] = []
        self._carried_since: dict[int, float] = {}
        self._carry_delay = CARRY_DELAY_SECONDS[0]

    @property
    def queue(self) -> str:
        return self._route.queue

    @property
    def in_flight(self) -> int:
        """Messages delivered and not yet acked: buffered, carried, or in the batch in hand."""
        return self._subscription.received - self.acked if self._subscription else 0

    async def run(self, halt: asyncio.Event, subscription: Subscription | None = None) -> None:
        """Consume until `halt` is set; the batch in hand is always finished first.

        Without `subscription` it consumes its queue beside other consumers and cancels when
        halted. With one (an exclusive consumer, see `ownership.py`) it never cancels: its
        owner closes the channel, so the deliveries it did not ack are back in the queue, in
        order, before another process may consume it."""
        shared = subscription is None
        self._subscription = subscription or await subscribe(self._channel, self._route.queue)
        buffer = self._subscription.buffer
        try:
            while not halt.is_set():
                room = max(1, self._settings.batch_max_size - len(self._carried))
                idle = self._carry_delay if self._carried else None
                fresh = await gather(buffer, halt, room, self._max_wait_ms, idle)
                batch = [*self._carried, *fresh]
                if batch and not halt.is_set():
                    await self._handle(batch, halt)
        finally:
            tag = self._subscription.consumer_tag
            if shared and not self._channel.is_closed and tag:
                await self._channel.basic_cancel(tag)

    async def _handle(self, batch: list[Delivery], halt: asyncio.Event) -> None:
        started = time.monotonic()
        envelopes = [self._replies.envelope(delivery) for delivery in batch]
        decided = await self._while_store_up(lambda: self._process(envelopes), halt)
        if decided is None:
            return  # halted during an outage: unacked, the broker redelivers
        outcomes = self._final(batch, envelopes, decided)
        await self._publisher.publish(self._replies.messages(batch, envelopes, outcomes))
        if await self._while_store_up(lambda: self._processor.complete(outcomes), halt) is None:
            return
        self.acked += await self._ack(batch, outcomes)
        self._replies.count(envelopes, outcomes)
        BATCH_SIZE.labels(self._route.queue).observe(len(batch))
        BATCH_SECONDS.labels(self._route.queue).observe(time.monotonic() - started)

    def _final(
        self, batch: list[Delivery], envelopes: list[Envelope], outcomes: list[Outcome]
    ) -> list[Outcome]:
        """The outcomes to act on: a failure out of retries is given up on (answered 500, the
        answer recorded for every later copy); a deferral carried too long, a failure."""
        now = time.monotonic()
        final: list[Outcome] = []
        for delivery, envelope, outcome in zip(batch, envelopes, outcomes, strict=True):
            since = self._carried_since.get(delivery.delivery_tag, now)
            if isinstance(outcome, Deferred) and now - since > CARRY_LIMIT_SECONDS:
                outcome = Failed(f"deferred for {now - since:.0f} s: {outcome.reason}")
            final.append(self._replies.given_up(envelope, outcome))
        return final

    async def _ack(self, batch: list[Delivery], outcomes: list[Outcome]) -> int:
        """Ack what the batch settled and carry the deferred to the next; how many acked."""
        carried = [d for d, o in zip(batch, outcomes, strict=True) if isinstance(o, Deferred)]
        settled = [d for d, o in zip(batch, outcomes, strict=True) if not isinstance(o, Deferred)]
        if not carried:  # what was carried before is in this batch, ahead of the rest
            await self._channel.basic_ack(batch[-1].delivery_tag, multiple=True)
        else:  # a multiple ack would take carried deliveries along
            for delivery in settled:
                await self._channel.basic_ack(delivery.delivery_tag)
        progress = len(carried) < len(self._carried) or bool(settled)
        if carried:
            reasons = dict(Counter(o.reason for o in outcomes if isinstance(o, Deferred)))
            log.debug(
                "commands carried to the next batch",
                extra={"queue": self._route.queue, "carried": len(carried), "reasons": reasons},
            )
        now = time.monotonic()
        self._carried_since = {
            d.delivery_tag: self._carried_since.get(d.delivery_tag, now) for d in carried
        }
        self._carried = carried
        low, high = CARRY_DELAY_SECONDS
        self._carry_delay = low if progress else min(self._carry_delay * 2, high)
        return len(settled)

    async def _process(self, envelopes: list[Envelope]) -> list[Outcome]:
        """The batch's outcomes; an unexpected failure is narrowed down to its messages."""
        try:
            return await self._processor.process(envelopes)
        except (StoreUnavailable, PartitionLost):
            raise
        except Exception as exc:
            if len(envelopes) == 1:
                log.exception("command failed", extra={"queue": self._route.queue})
                return [Failed(f"{type(exc).__name__}: {exc}")]
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
                self._health.store(True)
                return True if value is None else value
            except StoreUnavailable as exc:
                self._health.store(False)
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
