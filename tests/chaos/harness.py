"""The producer's and the observer's side of a chaos run, and the topology it runs on.

Results are read from the durable default result queues and events from a durable queue of
the run's own, both with reconnects, since exclusive reply queues would die with the broker.
The publisher waits for every confirm and, when the broker goes away, publishes again each
message it holds no confirm for, under the same message id: the duplicate real producers make.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from tests.chaos.generator import Message, Queue
from worker.errors import BrokerUnavailable
from worker.runtime.connection import connect
from worker.runtime.topology import declare
from worker.settings import Settings

ERRORS = (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, OSError, TimeoutError)


async def until(condition: Callable[[], bool], deadline: float = float("inf")) -> bool:
    """Poll `condition` (progress of other processes, which signal nothing) until it holds or
    `deadline` (monotonic) passes; whether it holds."""
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def connected(url: str, name: str, deadline: float = 180.0) -> AbstractConnection:
    """A connection, retried while the broker is away (a restart takes a while). With several
    addresses (a cluster's nodes), each try walks them as the worker does
    (`worker.runtime.connection.connect`): a node gone or cut off costs one attempt of at most
    five seconds."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return await connect(url, name, timeout_seconds=5)
        except BrokerUnavailable:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.5)


class Publisher:
    """Publishes messages in order with confirms, in windows; what a lost connection left
    unconfirmed is published again after reconnecting."""

    def __init__(self, url: str, queues: Mapping[Queue, str], window: int = 100) -> None:
        self._url = url
        self._queues = queues
        self._window = window
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self.published = 0
        self.republished = 0

    async def publish(self, messages: Sequence[Message]) -> None:
        for first in range(0, len(messages), self._window):
            pending = list(messages[first : first + self._window])
            while pending:
                pending = await self._publish_window(pending)
                self.republished += len(pending)

    async def _publish_window(self, pending: list[Message]) -> list[Message]:
        """Those of `pending` without a confirm (in order), after a reconnect if any."""
        try:
            channel = await self._ready()
            sends = [self._send(channel, message) for message in pending]
            outcomes = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 30)
        except ERRORS:
            outcomes = [ConnectionError()] * len(pending)
        failed = [m for m, o in zip(pending, outcomes, strict=True) if isinstance(o, BaseException)]
        self.published += len(pending) - len(failed)
        if failed:
            await self.close()
        return failed

    async def _send(self, channel: AbstractChannel, message: Message) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(
                orjson.dumps(message.body),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.message_id,
            ),
            routing_key=self._queues[message.queue],
        )

    async def _ready(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            await self.close()
            self._connection = await connected(self._url, "chaos publisher")
            self._channel = await self._connection.channel(publisher_confirms=True)
        return self._channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*ERRORS, RuntimeError):
                await connection.close()


class Collector:
    """Every result (by message id) and every event, consumed with acks from durable queues,
    reconnecting whenever the connection drops. A delivery the broker redelivers to the
    collector (it lost the ack) is recorded once only for events, and counted."""

    def __init__(self, url: str, result_queues: Sequence[str], events_queue: str) -> None:
        self._url = url
        self._result_queues = result_queues
        self._events_queue = events_queue
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.events: list[dict[str, Any]] = []
        self.redelivered_to_us = 0
        self.last_seen = time.monotonic()
        self.arrivals: list[float] = []
        """When each message id got its first answer (monotonic), in order."""
        self._seen_events: set[bytes] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                connection = await connected(self._url, "chaos collector")
            except ERRORS:
                continue
            try:
                await self._consume(connection, stop)
            except ERRORS:
                await asyncio.sleep(0.2)
            finally:
                with contextlib.suppress(*ERRORS, RuntimeError):
                    await connection.close()

    async def _consume(self, connection: AbstractConnection, stop: asyncio.Event) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1_000)
        for name in self._result_queues:
            queue = await channel.get_queue(name, ensure=True)
            await queue.consume(self._on_result)
        events = await channel.get_queue(self._events_queue, ensure=True)
        await events.consume(self._on_event)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())  # `closed()` waits for close()
        waits = {asyncio.ensure_future(lost.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in pending:
            wait.cancel()

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        message_id = message.correlation_id or str(body.get("message_id"))
        self.redelivered_to_us += bool(message.redelivered)
        self.last_seen = time.monotonic()
        if message_id not in self.answers:
            self.arrivals.append(self.last_seen)
        self.answers[message_id].append(body)
        await message.ack()

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        if message.redelivered:
            self.redelivered_to_us += 1
        if not (message.redelivered and message.body in self._seen_events):
            self.events.append(orjson.loads(message.body))
            self._seen_events.add(message.body)
        self.last_seen = time.monotonic()
        await message.ack()


async def declare_topology(url: str, settings: Settings, events_queue: str) -> None:
    """The worker's queues and exchanges, and a durable queue of the run's own with every
    event, of the worker's queue type: all there before the first command is published."""
    connection = await connected(url, "chaos setup")
    async with connection:
        channel = await connection.channel()
        await declare(channel, settings)
        arguments: dict[str, Any] = {"x-queue-type": settings.queue_type}  # replicated too
        queue = await channel.declare_queue(events_queue, durable=True, arguments=arguments)
        await queue.bind(settings.events_exchange, routing_key="#")


async def queued(url: str, names: Sequence[str]) -> int:
    """Messages waiting in `names` (ready ones; unacked ones are the worker's)."""
    connection = await connected(url, "chaos probe")
    total = 0
    async with connection:
        for name in names:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            total += queue.declaration_result.message_count or 0
    return total
