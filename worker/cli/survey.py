"""What the broker says of each command queue's partitions over AMQP: passive declares give
the messages ready and the consumers of every queue, exactly and at once."""

from __future__ import annotations

from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from worker.runtime.connection import connect
from worker.runtime.partitions import Partitions
from worker.runtime.topology import command_routes
from worker.settings import Settings


@dataclass(frozen=True)
class Depth:
    """A queue as a passive declare shows it."""

    ready: int
    consumers: int


@dataclass(frozen=True)
class Stage:
    """One queue a single process consumes: a partition, or a routing stage."""

    queue: str
    role: str
    depth: Depth | None
    """None: the queue does not exist."""


@dataclass(frozen=True)
class Family:
    """A command queue: its partitions, its routing stage (P > 1) and its live processes."""

    partitions: Partitions
    stages: list[Stage]
    members: int | None
    """Consumers of `<queue>.members`: the live processes (None: the queue does not exist)."""

    @property
    def absent(self) -> list[str]:
        return [stage.queue for stage in self.stages if stage.depth is None]


async def survey(settings: Settings, partitions: int) -> list[Family]:
    """Every command queue's partitions under `partitions` (P), looked at once."""
    connection = await connect(
        settings.amqp_url, "profile-worker partitions", settings.broker_connect_timeout_seconds
    )
    try:
        look = _Looker(connection)
        families = []
        for route in command_routes(settings):
            family = Partitions(route.queue, partitions)
            stages = [
                Stage(name, f"partition {index}", await look.at(name))
                for index, name in enumerate(family.names)
            ]
            if family.routed:
                stages.append(Stage(route.queue, "routing stage", await look.at(route.queue)))
            members = await look.at(family.members)
            families.append(Family(family, stages, members.consumers if members else None))
        return families
    finally:
        await connection.close()


class _Looker:
    """Passive declares on one channel; the broker closes it for a queue that does not
    exist, so the next look opens another."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None

    async def at(self, queue: str) -> Depth | None:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        try:
            declared = await self._channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = declared.declaration_result
        return Depth(result.message_count or 0, result.consumer_count or 0)
