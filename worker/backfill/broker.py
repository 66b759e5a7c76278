"""The backfill's side of the broker: a confirmed channel to the command queue, and the
durable reply queue its answers wait on (see `answers`)."""

from __future__ import annotations

import contextlib

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ConsumerCallback

from worker.backfill.destination import Destination
from worker.backfill.publishing import BROKER_GONE
from worker.errors import ConfigurationError

REPLY_QUEUE_EXPIRES_MS = 7 * 86_400 * 1_000
"""An abandoned reply queue disappears after a week unused (the default dedup window)."""
REPLY_PREFETCH = 20_000
"""Unacknowledged answers at most: bounds the broker's and this process's memory."""


class BackfillBroker:
    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._replies: aiormq.Channel | None = None
        self._reply_queue = ""
        self._consumer_tag: str | None = None
        self._acked = 0
        self._channels: list[AbstractChannel] = []

    async def publishing(self, destination: Destination) -> aiormq.Channel:
        """A channel with publisher confirms, once the destination is known to exist (a
        command published to no queue would be dropped, confirmed all the same)."""
        probe = await self._connection.channel(publisher_confirms=False)
        try:
            if destination.exchange:
                await probe.declare_exchange(destination.exchange, passive=True)
            else:
                await probe.declare_queue(destination.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise ConfigurationError(_missing(destination)) from exc
        finally:
            await probe.close()
        return await self._channel(confirms=True)

    async def consume_replies(self, name: str, callback: ConsumerCallback) -> None:
        """Declare the reply queue (durable, expiring when unused) and consume it."""
        channel = await self._channel(confirms=False)
        await channel.queue_declare(
            name, durable=True, arguments={"x-expires": REPLY_QUEUE_EXPIRES_MS}
        )
        await channel.basic_qos(prefetch_count=REPLY_PREFETCH)
        consuming = await channel.basic_consume(name, callback, no_ack=False)
        self._replies, self._reply_queue = channel, name
        self._consumer_tag = consuming.consumer_tag

    async def acknowledge(self, tag: int | None) -> None:
        """Acknowledge every answer up to `tag` (they are in a saved checkpoint)."""
        if self._replies is None or tag is None or tag <= self._acked:
            return
        await self._replies.basic_ack(tag, multiple=True)
        self._acked = tag

    async def delete_replies(self) -> None:
        """Every answer is in: the reply queue (and copies left in it) can go."""
        if self._replies is not None:
            with contextlib.suppress(*BROKER_GONE):
                if self._consumer_tag:
                    await self._replies.basic_cancel(self._consumer_tag)
                await self._replies.queue_delete(self._reply_queue)

    async def _channel(self, confirms: bool) -> aiormq.Channel:
        channel = await self._connection.channel(publisher_confirms=confirms)
        self._channels.append(channel)  # the wrapper owns the channel: keep it alive
        underlay = await channel.get_underlay_channel()
        assert isinstance(underlay, aiormq.Channel)
        return underlay


def _missing(destination: Destination) -> str:
    if destination.exchange:
        return (
            f"the exchange '{destination.exchange}' does not exist: the partitions of "
            f"'{destination.queue}' are declared by workers running with PW_PARTITIONS > 1 "
            "(or `profile-worker topology` with it)"
        )
    return (
        f"the queue '{destination.queue}' does not exist: declare it with `profile-worker "
        "topology` (or start a worker) first"
    )
