"""Publishing with publisher confirms, pipelined: all of a batch's messages are in flight at
once and the call returns when the broker has confirmed every one.

It publishes on aiormq's channel directly: a message is one frame set written without waiting
for the socket to drain, and one confirm future; aio-pika's `Message` and `Exchange` objects
cost more than the publish itself at the worker's rates (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from worker.errors import BrokerUnavailable

BROKER_GONE = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
JSON = "application/json"
PERSISTENT = 2


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish; `exchange` "" is the default exchange."""

    routing_key: str
    body: bytes
    exchange: str = ""
    correlation_id: str | None = None
    message_id: str | None = None
    reply_to: str | None = None
    user_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


class Publisher:
    def __init__(self, channel: AbstractChannel) -> None:
        if not isinstance(channel, aiormq.Channel):  # `wait=False` is not on the abstract one
            raise TypeError(f"an aiormq channel is needed, not {type(channel).__name__}")
        self._channel = channel

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish persistently and wait for every confirm; any failure is BrokerUnavailable."""
        if not messages:
            return
        try:
            confirms = await asyncio.gather(*(self._publish_one(m) for m in messages))
        except BROKER_GONE as exc:
            raise BrokerUnavailable(f"publish failed: {exc!r}") from exc
        refused = sum(1 for confirm in confirms if not isinstance(confirm, Basic.Ack))
        if refused:
            raise BrokerUnavailable(f"the broker did not confirm {refused} published messages")

    async def _publish_one(self, outgoing: Outgoing) -> object:
        properties = Basic.Properties(
            content_type=JSON,
            delivery_mode=PERSISTENT,
            correlation_id=outgoing.correlation_id,
            message_id=outgoing.message_id,
            reply_to=outgoing.reply_to,
            user_id=outgoing.user_id,
            headers=outgoing.headers or None,
        )
        return await self._channel.basic_publish(
            outgoing.body,
            exchange=outgoing.exchange,
            routing_key=outgoing.routing_key,
            properties=properties,
            wait=False,
        )
