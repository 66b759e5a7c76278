"""Publishing with confirms in pipelined windows, and a confirmed watermark that only moves
over contiguous lines.

Commands go out in chunks of a quarter of the window; up to four chunks are unconfirmed at a
time, so the broker confirms one chunk while the next ones are being written. Chunks are
settled oldest first, so when a chunk is confirmed every line before its last one is too:
that line is the new watermark (lines with nothing to publish, refused before sending, are
passed over the same way). On aiormq directly: aio-pika's message objects cost more than the
publish itself at these rates (bench/RESULTS.md, bench/backfill.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiormq
from pamqp.commands import Basic

from worker.backfill.destination import Destination
from worker.errors import BrokerUnavailable

DEPTH = 4
"""Chunks in flight at most; the window is split into this many."""
BROKER_GONE = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class Unroutable(Exception):
    """The broker returned a command: its queue no longer exists (or the partition exchange
    has no queue bound)."""


@dataclass(frozen=True)
class Chunk:
    confirms: asyncio.Future[list[object]]
    last_line: int
    size: int


class Pipeline:
    """Publishes to one destination (a queue's name: that queue); `on_confirmed(line, count)`
    reports the watermark in order."""

    def __init__(
        self,
        channel: aiormq.Channel,
        destination: Destination | str,
        window: int,
        on_confirmed: Callable[[int, int], None],
    ) -> None:
        self._channel = channel
        self._destination = (
            destination if isinstance(destination, Destination) else Destination(destination)
        )
        self._chunk_size = max(1, window // DEPTH)
        self._on_confirmed = on_confirmed
        self._pending: list[tuple[bytes, Basic.Properties, str]] = []
        self._in_flight: deque[Chunk] = deque()
        self._last_line = 0

    async def publish(self, line: int, body: bytes, properties: Basic.Properties) -> None:
        """Queue one line's command; waits while the window is full."""
        self._pending.append((body, properties, self._destination.routing_key(body)))
        self._last_line = line
        if len(self._pending) >= self._chunk_size:
            self._send()
            while len(self._in_flight) >= DEPTH:
                await self._settle_oldest()

    def passed(self, line: int) -> None:
        """A line with nothing to publish: confirmed as soon as the lines before it are."""
        self._last_line = line

    async def flush(self) -> None:
        """Send what is pending and wait until every command is confirmed."""
        if self._pending:
            self._send()
        while self._in_flight:
            await self._settle_oldest()
        self._on_confirmed(self._last_line, 0)

    def abandon(self) -> None:
        """Stop waiting for confirms (the run is failing); nothing unconfirmed is counted."""
        for chunk in self._in_flight:
            chunk.confirms.cancel()
            chunk.confirms.add_done_callback(_retrieved)
        self._in_flight.clear()

    def _send(self) -> None:
        pending, self._pending = self._pending, []
        confirms = asyncio.gather(*(self._publish_one(*item) for item in pending))
        self._in_flight.append(Chunk(confirms, self._last_line, len(pending)))

    async def _publish_one(self, body: bytes, properties: Basic.Properties, key: str) -> object:
        return await self._channel.basic_publish(
            body,
            exchange=self._destination.exchange,
            routing_key=key,
            properties=properties,
            mandatory=True,
            wait=False,
        )

    async def _settle_oldest(self) -> None:
        chunk = self._in_flight[0]
        try:
            confirms = await chunk.confirms
        except aiormq.exceptions.PublishError as exc:
            raise Unroutable(
                f"the broker returned a command: {_unroutable(self._destination)}"
            ) from exc
        except BROKER_GONE as exc:
            where = self._destination.described
            raise BrokerUnavailable(f"publishing to {where} failed: {exc!r}") from exc
        self._in_flight.popleft()
        refused = sum(1 for confirm in confirms if not isinstance(confirm, Basic.Ack))
        if refused:
            raise BrokerUnavailable(f"the broker refused (nack) {refused} published commands")
        self._on_confirmed(chunk.last_line, chunk.size)


def _unroutable(destination: Destination) -> str:
    if destination.exchange:
        return f"no partition queue is bound to the exchange '{destination.exchange}'"
    return f"no queue '{destination.queue}'"


def _retrieved(future: asyncio.Future[list[object]]) -> None:
    """Mark an abandoned chunk's failure as seen: the run reports its own failure."""
    if not future.cancelled():
        future.exception()
