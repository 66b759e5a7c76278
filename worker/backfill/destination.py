"""Where a backfill publishes: the command queue (the default), or, with `--partitioned`, the
command queue's partition exchange, skipping the routing stage.

Straight to the partitions, each command's routing key is the one the routing stage would give
it, `worker.domain.order.routing_key`: the partition exchange puts it in the partition of its
order key, behind the commands of that key already there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.domain.order import CommandKind, routing_key
from worker.runtime.partitions import Partitions


@dataclass(frozen=True)
class Destination:
    queue: str
    """The command queue the commands are for."""
    exchange: str = ""
    """"": the default exchange, straight to `queue`; else the partition exchange."""
    route: Callable[[bytes], str] | None = None
    """With the partition exchange: a command's routing key, from its body."""

    def routing_key(self, body: bytes) -> str:
        return self.route(body) if self.route else self.queue

    @property
    def described(self) -> str:
        return f"exchange '{self.exchange}'" if self.exchange else f"queue '{self.queue}'"


def to_partitions(partitions: Partitions, kind: CommandKind, max_bytes: int) -> Destination:
    return Destination(
        partitions.queue,
        partitions.exchange,
        lambda body: routing_key(kind, body, partitions.count, max_bytes),
    )
