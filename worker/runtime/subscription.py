"""The deliveries of one `basic.consume`, buffered for a batch loop, and how a batch is
gathered from them (up to a size, or until a wait ends)."""

from __future__ import annotations

import asyncio
import time

from aiormq.abc import AbstractChannel, DeliveredMessage

from worker.runtime.delivery import Delivery


class Subscription:
    """Deliveries of one consumer in the order the broker sent them; `received` counts them."""

    def __init__(self) -> None:
        self.buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self.received = 0
        self.consumer_tag: str | None = None

    async def on_message(self, message: DeliveredMessage) -> None:
        self.received += 1
        self.buffer.put_nowait(Delivery.of(message))


async def subscribe(
    channel: AbstractChannel, queue: str, *, exclusive: bool = False, consumer_tag: str = ""
) -> Subscription:
    """Consume `queue` on `channel`; with `exclusive`, the broker refuses a second consumer
    (`ChannelAccessRefused`, "in exclusive use") and closes this channel."""
    subscription = Subscription()
    ok = await channel.basic_consume(
        queue,
        subscription.on_message,
        no_ack=False,
        exclusive=exclusive,
        consumer_tag=consumer_tag or None,
    )
    subscription.consumer_tag = ok.consumer_tag
    return subscription


async def gather(
    buffer: asyncio.Queue[Delivery],
    halt: asyncio.Event,
    room: int,
    max_wait_ms: int,
    idle_seconds: float | None = None,
) -> list[Delivery]:
    """Up to `room` deliveries, waiting at most `max_wait_ms` after the first; none if halted
    first, or if nothing came within `idle_seconds` (None: wait as long as it takes)."""
    first = asyncio.ensure_future(buffer.get())
    halted = asyncio.ensure_future(halt.wait())
    try:
        await asyncio.wait(
            {first, halted}, timeout=idle_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:  # also when the session ends and cancels the caller: no task left pending
        halted.cancel()
        if not first.done():
            first.cancel()
    if not first.done() or first.cancelled():
        return []
    batch = [first.result()]
    deadline = time.monotonic() + max_wait_ms / 1000
    while len(batch) < room:
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
