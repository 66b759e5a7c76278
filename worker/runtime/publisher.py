"""Publishing with publisher confirms, pipelined: all of a batch's messages are in flight at
once and the call returns when the broker has confirmed every one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiormq
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import AMQPException

from worker.errors import BrokerUnavailable


@dataclass(frozen=True)
class Outgoing:
    """One message to publish; `exchange` None means the default exchange."""

    routing_key: str
    body: bytes
    exchange: AbstractExchange | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    reply_to: str | None = None
    user_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


class Publisher:
    def __init__(self, default_exchange: AbstractExchange) -> None:
        self._default = default_exchange

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish persistently and wait for every confirm; any failure is BrokerUnavailable."""
        if not messages:
            return
        try:
            await asyncio.gather(*(self._publish_one(message) for message in messages))
        except (AMQPException, aiormq.exceptions.AMQPError, ConnectionError) as exc:
            raise BrokerUnavailable(f"publish failed: {exc!r}") from exc

    async def _publish_one(self, outgoing: Outgoing) -> None:
        message = Message(
            outgoing.body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            correlation_id=outgoing.correlation_id,
            message_id=outgoing.message_id,
            reply_to=outgoing.reply_to,
            user_id=outgoing.user_id,
            headers=outgoing.headers or None,
        )
        exchange = outgoing.exchange or self._default
        await exchange.publish(message, routing_key=outgoing.routing_key)
