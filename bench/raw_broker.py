"""The broker's ceiling for the worker's traffic, with no database and no domain: commands
already queued are consumed, each is answered with `fan_out` persistent messages published
with pipelined confirms, and every batch is acked with one grouped ack.

It speaks aiormq directly, as the worker does, so it measures the broker and the lightest
client this process can run, not the worker's code. `fan_out` is the messages a command sends:
an import of the bench mix answers and emits one event (2), as does a `strengthen`.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

BATCH = 256
PERSISTENT = Basic.Properties(delivery_mode=2, content_type="application/json")


async def raw_broker(amqp_url: str, body: bytes, count: int, fan_out: int = 2) -> float:
    """Commands per second through the broker alone."""
    connection = await aiormq.connect(amqp_url)
    try:
        setup = await connection.channel()
        source = f"bench.raw.{uuid.uuid4().hex[:8]}"
        sink = f"bench.sink.{uuid.uuid4().hex[:8]}"
        for name in (source, sink):
            await setup.queue_declare(name, durable=True)
        await _fill(connection, source, body, count)
        rate = await _drain(connection, source, sink, count, fan_out)
        for name in (source, sink):
            await setup.queue_delete(name)
        return rate
    finally:
        await connection.close()


async def _fill(
    connection: aiormq.abc.AbstractConnection, queue: str, body: bytes, count: int
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    for start in range(0, count, 1_000):
        window = min(1_000, count - start)
        await asyncio.gather(
            *(
                channel.basic_publish(body, routing_key=queue, properties=PERSISTENT)
                for _ in range(window)
            )
        )
    await channel.close()


async def _drain(
    connection: aiormq.abc.AbstractConnection, source: str, sink: str, count: int, fan_out: int
) -> float:
    publish = await connection.channel(publisher_confirms=True)
    consume = await connection.channel(publisher_confirms=False)
    await consume.basic_qos(prefetch_count=512)
    arrived: asyncio.Queue[int] = asyncio.Queue()

    async def received(message: DeliveredMessage) -> None:
        arrived.put_nowait(getattr(message.delivery, "delivery_tag", 0))

    consuming = await consume.basic_consume(source, received, no_ack=False)
    answer = b'{"error":0,"error_text":"Successful operation"}'
    seen = 0
    started = time.perf_counter()
    while seen < count:
        batch = [await arrived.get()]
        while len(batch) < BATCH and seen + len(batch) < count:
            batch.append(await arrived.get())
        await asyncio.gather(
            *(
                publish.basic_publish(answer, routing_key=sink, properties=PERSISTENT)
                for _ in range(len(batch) * fan_out)
            )
        )
        await consume.basic_ack(batch[-1], multiple=True)
        seen += len(batch)
    rate = count / (time.perf_counter() - started)
    if consuming.consumer_tag:
        await consume.basic_cancel(consuming.consumer_tag)
    return rate
