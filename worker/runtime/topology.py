"""Queues and exchanges of SPEC §2, declared idempotently at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from worker.settings import Settings


@dataclass(frozen=True)
class Route:
    """A command queue and where its results go by default."""

    queue: str
    result_queue: str | None

    def queue_names(self, retry_attempts: int) -> list[str]:
        """Every queue of the route: itself, its retries, its dead letters, its results."""
        names = [self.queue, *(self.retry_queue(n) for n in range(1, retry_attempts + 1))]
        return [*names, self.dead_queue, *([self.result_queue] if self.result_queue else [])]

    def retry_queue(self, attempt: int) -> str:
        return f"{self.queue}.retry.{attempt}"

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"


@dataclass(frozen=True)
class Topology:
    events: AbstractExchange
    dead_letter: AbstractExchange


def routes(settings: Settings) -> list[Route]:
    return [
        Route(settings.import_queue, settings.import_result_queue),
        Route(settings.relations_queue, settings.relations_result_queue),
        Route(settings.relations_query_queue, None),
    ]


async def declare_command_queue(
    channel: AbstractChannel, settings: Settings, route: Route
) -> AbstractQueue:
    """The command queue; rejected messages dead-letter to `<queue>.dead`."""
    return await channel.declare_queue(
        route.queue,
        durable=True,
        arguments={
            "x-queue-type": settings.queue_type,
            "x-dead-letter-exchange": settings.dead_letter_exchange,
            "x-dead-letter-routing-key": route.queue,
        },
    )


async def declare(channel: AbstractChannel, settings: Settings) -> Topology:
    """Declare everything; safe to run on every start and from several workers."""
    events = await channel.declare_exchange(
        settings.events_exchange, ExchangeType.TOPIC, durable=True
    )
    dead_letter = await channel.declare_exchange(
        settings.dead_letter_exchange, ExchangeType.DIRECT, durable=True
    )
    queue_type: dict[str, Any] = {"x-queue-type": settings.queue_type}
    for route in routes(settings):
        await declare_command_queue(channel, settings, route)
        dead = await channel.declare_queue(route.dead_queue, durable=True, arguments=queue_type)
        await dead.bind(dead_letter, routing_key=route.queue)
        for attempt in range(1, settings.retry_max_attempts + 1):
            await channel.declare_queue(
                route.retry_queue(attempt),
                durable=True,
                arguments={
                    **queue_type,
                    "x-message-ttl": settings.retry_delay_ms(attempt),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": route.queue,
                },
            )
        if route.result_queue:
            await channel.declare_queue(
                route.result_queue,
                durable=True,
                arguments={**queue_type, "x-message-ttl": settings.result_ttl_seconds * 1000},
            )
    return Topology(events=events, dead_letter=dead_letter)
