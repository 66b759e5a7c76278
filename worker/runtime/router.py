"""The routing stage: moves a command queue's commands, in queue order, into its partitions.

One process at a time routes a queue (its consumer is exclusive, see `ownership.py`). Each
command is published unchanged (body, message id, correlation id, reply-to, headers) to the
partition exchange under its partition's key (`worker.domain.order.routing_key`), with publisher
confirms, and the batch is acked only once every copy is confirmed: a crash in between routes
the batch again, and the copies are answered from the inbox like any redelivery. The producer's
broker user travels in the header the worker vouches for, as on its retry and dead-letter
copies. A body that is not a command is routed by its own hash and refused by the partition that
gets it, so the stage never stops on one.
"""

from __future__ import annotations

import asyncio

from aiormq.abc import AbstractChannel

from worker.domain.order import CommandKind, routing_key
from worker.observability import ROUTED
from worker.runtime.delivery import Delivery
from worker.runtime.partitions import Partitions
from worker.runtime.publisher import Outgoing, Publisher
from worker.runtime.replies import producer_user, vouched_headers
from worker.runtime.subscription import Subscription, gather
from worker.settings import Settings


class RoutingStage:
    def __init__(
        self,
        channel: AbstractChannel,
        partitions: Partitions,
        kind: CommandKind,
        publisher: Publisher,
        settings: Settings,
    ) -> None:
        self._channel = channel
        self._partitions = partitions
        self._kind = kind
        self._publisher = publisher
        self._settings = settings
        self._subscription: Subscription | None = None
        self.acked = 0

    @property
    def queue(self) -> str:
        return self._partitions.queue

    @property
    def in_flight(self) -> int:
        return self._subscription.received - self.acked if self._subscription else 0

    async def run(self, halt: asyncio.Event, subscription: Subscription) -> None:
        """Route until `halt`; the batch in hand is finished first. The owner closes the
        channel after, so what was not acked goes back to the queue in order."""
        self._subscription = subscription
        size, wait = self._settings.batch_max_size, self._settings.batch_max_wait_ms
        while not halt.is_set():
            batch = await gather(subscription.buffer, halt, size, wait)
            if not batch:
                continue
            await self._publisher.publish([self._forwarded(delivery) for delivery in batch])
            await self._channel.basic_ack(batch[-1].delivery_tag, multiple=True)
            self.acked += len(batch)
            ROUTED.labels(self.queue).inc(len(batch))

    def _forwarded(self, delivery: Delivery) -> Outgoing:
        settings = self._settings
        producer = producer_user(delivery, settings.broker_user)
        return Outgoing(
            routing_key=routing_key(
                self._kind, delivery.body, self._partitions.count, settings.max_message_bytes
            ),
            body=delivery.body,
            exchange=self._partitions.exchange,
            correlation_id=delivery.correlation_id,
            message_id=delivery.message_id,
            reply_to=delivery.reply_to,
            user_id=settings.broker_user,
            headers=vouched_headers(delivery, producer),
        )
