"""Publishing with publisher confirms, pipelined: all of a batch's messages are in flight at
once and the call returns when the broker has confirmed every one.

A message the broker refuses (a negative confirm: a queue at its length limit with
`x-overflow: reject-publish`, see `result_queue_max_length`) is not lost and not a broker
outage: it is published again, alone, after a growing pause, until the broker takes it. The
caller, the consumer, is held meanwhile, so its batch stays unacked and prefetch stops the
flow: a slow reader of results slows the worker down instead of losing results. Only the
refused messages go again, so the confirmed ones (answers, events) are never sent twice.

It publishes on aiormq's channel directly: a message is one frame set written without waiting
for the socket to drain, and one confirm future; aio-pika's `Message` and `Exchange` objects
cost more than the publish itself at the worker's rates (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from worker.errors import BrokerUnavailable, TransientError
from worker.observability import PUBLISH_REFUSALS

log = logging.getLogger("worker.publisher")

BROKER_GONE = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
JSON = "application/json"
PERSISTENT = 2
DEFAULT_EXCHANGE = "amq.default"
"""How the default exchange ("") is named in metrics, as in RabbitMQ's management UI."""


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


class PublishRefused(TransientError):
    """The broker confirmed some messages and refused these (negative confirms)."""

    def __init__(self, refused: Sequence[Outgoing], published: int) -> None:
        routing_keys = sorted({message.routing_key for message in refused})
        super().__init__(
            f"the broker refused {len(refused)} of {published} published messages "
            f"(routing keys {', '.join(routing_keys[:5])}): a queue at its length limit?"
        )
        self.refused = tuple(refused)


class Publisher:
    def __init__(
        self,
        channel: AbstractChannel,
        *,
        first_pause_seconds: float = 0.05,
        max_pause_seconds: float = 1.0,
    ) -> None:
        if not isinstance(channel, aiormq.Channel):  # `wait=False` is not on the abstract one
            raise TypeError(f"an aiormq channel is needed, not {type(channel).__name__}")
        self._channel = channel
        self._first_pause = first_pause_seconds
        self._max_pause = max_pause_seconds

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish persistently and wait until the broker has taken every message.

        Refused messages are published again after a pause that doubles up to
        `max_pause_seconds`, for as long as it takes: the caller holds its commands unacked
        meanwhile, and a shutdown ends the wait by cancelling it (the commands are then
        redelivered). A lost connection or channel is `BrokerUnavailable`.
        """
        pending: Sequence[Outgoing] = messages
        pause, retries, started = self._first_pause, 0, time.monotonic()
        while True:
            try:
                await self.publish_once(pending)
            except PublishRefused as refused:
                pending = refused.refused
                for message in pending:
                    PUBLISH_REFUSALS.labels(message.exchange or DEFAULT_EXCHANGE).inc()
                if retries == 0:
                    log.warning(
                        "publish refused; publishing the refused messages again until taken",
                        extra={"error": refused.text, "refused": len(pending)},
                    )
                await self._pause(pause)
                pause, retries = min(pause * 2, self._max_pause), retries + 1
                continue
            if retries:
                log.info(
                    "refused messages taken",
                    extra={"retries": retries, "waited_seconds": time.monotonic() - started},
                )
            return

    async def publish_once(self, messages: Sequence[Outgoing]) -> None:
        """Publish persistently and wait for every confirm, once: `PublishRefused` names the
        messages the broker refused; a lost connection or channel is `BrokerUnavailable`."""
        if not messages:
            return
        confirms = await asyncio.gather(
            *(self._publish_one(m) for m in messages), return_exceptions=True
        )
        refused = refused_messages(messages, confirms)
        if refused:
            raise PublishRefused(refused, len(messages))

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the channel closes meanwhile (the next publish then
        fails as `BrokerUnavailable`, and the worker reconnects)."""
        closing = self._channel.closing  # an observer of the closing: cancelling it is safe
        try:
            await asyncio.wait({closing}, timeout=seconds)
        finally:
            closing.cancel()

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


def refused_messages(
    messages: Sequence[Outgoing], confirms: Sequence[object | BaseException]
) -> list[Outgoing]:
    """The messages the broker refused with a negative confirm, in order.

    Any other outcome than a confirm or a refusal means the channel or connection is gone
    (`BrokerUnavailable`: the batch is redelivered); an exception that is not the broker's is
    a bug and is raised as it is.
    """
    refused: list[Outgoing] = []
    for message, confirm in zip(messages, confirms, strict=True):
        match confirm:
            case Basic.Ack():
                continue
            case aiormq.exceptions.DeliveryError(frame=Basic.Nack()):
                refused.append(message)
            case asyncio.CancelledError():  # its confirm was given up with the channel
                raise BrokerUnavailable(f"publish failed: {confirm!r}")
            case BaseException() if isinstance(confirm, BROKER_GONE):
                raise BrokerUnavailable(f"publish failed: {confirm!r}") from confirm
            case BaseException():
                raise confirm
            case _:
                raise BrokerUnavailable(f"the broker did not confirm a message: {confirm!r}")
    return refused
