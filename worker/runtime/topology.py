"""Queues and exchanges of SPEC §2, declared idempotently at start-up.

A queue's arguments are fixed when it is first declared: RabbitMQ refuses a declaration with
other ones (PRECONDITION_FAILED), so every default here keeps the arguments that queues of
existing deployments were declared with, and a refusal stops the worker with what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from worker.domain.order import partition_key
from worker.errors import ConfigurationError
from worker.runtime.partitions import (
    SINGLE_ACTIVE,
    Partitions,
    signal_queue_arguments,
)
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
    return [*command_routes(settings), Route(settings.relations_query_queue, None)]


def command_routes(settings: Settings) -> list[Route]:
    """The routes of commands that change data: partitioned, each applied in order per key."""
    return [
        Route(settings.import_queue, settings.import_result_queue),
        Route(settings.relations_queue, settings.relations_result_queue),
    ]


def partitions_of(settings: Settings, route: Route) -> Partitions:
    return Partitions(route.queue, settings.partitions)


def topology_names(settings: Settings) -> tuple[list[str], list[str]]:
    """Every queue and exchange the worker declares under `settings`: (queues, exchanges)."""
    queues = [
        n for route in routes(settings) for n in route.queue_names(settings.retry_max_attempts)
    ]
    exchanges = [settings.events_exchange, settings.dead_letter_exchange]
    for route in command_routes(settings):
        partitions = partitions_of(settings, route)
        queues += partitions.queue_names()
        exchanges += [partitions.exchange] if partitions.routed else []
    return queues, exchanges


def command_queue_arguments(settings: Settings, route: Route) -> dict[str, Any]:
    """A consumed queue's arguments: rejected messages dead-letter to `<queue>.dead`. Quorum
    queues of commands that change data keep one active consumer by argument (see
    `SINGLE_ACTIVE`); classic ones keep the arguments they always had, and the query queue
    is shared by competing consumers."""
    arguments: dict[str, Any] = {
        "x-queue-type": settings.queue_type,
        "x-dead-letter-exchange": settings.dead_letter_exchange,
        "x-dead-letter-routing-key": route.queue,
    }
    if settings.queue_type == "quorum" and route in command_routes(settings):
        arguments |= SINGLE_ACTIVE
    return arguments


async def declare_command_queue(
    channel: AbstractChannel, settings: Settings, route: Route
) -> AbstractQueue:
    """A queue producers publish to."""
    return await _declare_queue(channel, route.queue, command_queue_arguments(settings, route))


async def declare_partitions(channel: AbstractChannel, settings: Settings, route: Route) -> None:
    """The membership queues, and with P > 1 the partition exchange and queues."""
    partitions = partitions_of(settings, route)
    for name in (partitions.members, partitions.hungry):
        await _declare_queue(channel, name, signal_queue_arguments(settings.queue_type))
    if not partitions.routed:
        return
    try:
        exchange = await channel.declare_exchange(
            partitions.exchange, ExchangeType.DIRECT, durable=True
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"the partition exchange '{partitions.exchange}' exists with another type: {exc}. "
            "An earlier version declared it x-consistent-hash; drain its partitions, then "
            f"delete it (rabbitmqctl delete_exchange {partitions.exchange}) and start again"
        ) from exc
    arguments = command_queue_arguments(settings, route)
    for index, name in enumerate(partitions.names):
        queue = await _declare_queue(channel, name, arguments)
        await queue.bind(exchange, routing_key=partition_key(index))


def result_queue_arguments(settings: Settings) -> dict[str, Any]:
    """A result queue's arguments: unbounded by default, exactly as before the length limit
    existed; with `result_queue_max_length`, a full queue refuses results (the publisher
    retries them) rather than dropping its oldest, RabbitMQ's default overflow."""
    arguments: dict[str, Any] = {
        "x-queue-type": settings.queue_type,
        "x-message-ttl": settings.result_ttl_seconds * 1000,
    }
    if settings.result_queue_max_length is not None:
        arguments["x-max-length"] = settings.result_queue_max_length
        arguments["x-overflow"] = "reject-publish"
    return arguments


async def _declare_queue(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    """A durable queue; a refusal of its arguments is a `ConfigurationError`: retrying cannot
    mend it, and reconnecting forever would hide it."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"the broker refused to declare queue '{name}': {exc}. "
            "A queue keeps the arguments it was first declared with: restore the settings it "
            "was declared under, or delete the queue (its messages with it) so the worker "
            "declares it anew"
        ) from exc


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
        dead = await _declare_queue(channel, route.dead_queue, queue_type)
        await dead.bind(dead_letter, routing_key=route.queue)
        for attempt in range(1, settings.retry_max_attempts + 1):
            name = route.retry_queue(attempt)
            delayed: dict[str, Any] = {
                **queue_type,
                "x-message-ttl": settings.retry_delay_ms(attempt),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": route.queue,
            }
            await _declare_queue(channel, name, delayed)
        if route.result_queue:
            await _declare_queue(channel, route.result_queue, result_queue_arguments(settings))
    for route in command_routes(settings):
        await declare_partitions(channel, settings, route)
    return Topology(events=events, dead_letter=dead_letter)
