"""A small producer: publish commands with `reply_to` and collect their results.

Used by the CLI (`publish`, `demo`), the benchmarks and the integration tests, so that all of
them speak to the worker exactly as a producer would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import orjson
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from worker.runtime.connection import connect


class Reply(dict[str, Any]):
    """A result body, with the AMQP correlation id it came back with."""

    correlation_id: str | None = None


class CommandClient:
    def __init__(self, amqp_url: str, window: int = 1_000) -> None:
        self._amqp_url = amqp_url
        self._window = window
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._replies: asyncio.Queue[Reply] = asyncio.Queue()
        self.reply_queue = ""

    async def __aenter__(self) -> CommandClient:
        self._connection = await connect(self._amqp_url, "profile-worker client")
        self._channel = await self._connection.channel(publisher_confirms=True)
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        self.reply_queue = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "use CommandClient as an async context manager"
        return self._channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = Reply(orjson.loads(message.body))
        reply.correlation_id = message.correlation_id
        await self._replies.put(reply)

    async def send(
        self,
        queue: str,
        body: dict[str, Any] | bytes,
        *,
        message_id: str | None = None,
        reply: bool = True,
        user_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Publish one command (persistent, confirmed); returns its correlation id."""
        correlation_id = message_id or uuid.uuid4().hex
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        await self.channel.default_exchange.publish(
            Message(
                payload,
                content_type="application/json",
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=message_id,
                correlation_id=correlation_id,
                reply_to=self.reply_queue if reply else None,
                user_id=user_id,
                headers=headers,
            ),
            routing_key=queue,
        )
        return correlation_id

    async def send_many(
        self,
        queue: str,
        bodies: Iterable[tuple[str | None, dict[str, Any] | bytes]],
        *,
        reply: bool = True,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Publish (message_id, body) pairs with a bounded window of unconfirmed messages."""
        pending: set[asyncio.Task[str]] = set()
        sent = 0
        for message_id, body in bodies:
            if len(pending) >= self._window:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                if on_sent:
                    on_sent(len(done))
            pending.add(
                asyncio.ensure_future(self.send(queue, body, message_id=message_id, reply=reply))
            )
            sent += 1
        if pending:
            await asyncio.gather(*pending)
            if on_sent:
                on_sent(len(pending))
        return sent

    async def reply(self, timeout: float = 10.0) -> Reply:
        """The next result that came back to this client."""
        return await asyncio.wait_for(self._replies.get(), timeout)

    async def replies(self, count: int, timeout: float = 30.0) -> list[Reply]:
        """`count` results, or TimeoutError if they do not all come within `timeout`."""
        async with asyncio.timeout(timeout):
            return [await self._replies.get() for _ in range(count)]
