"""The partitions of a command queue (SPEC §2, §9): their names, and how they are declared.

With P > 1 a command queue `Q` is drained by one routing stage into the direct exchange
`Q.partitions`, to which each partition queue `Q.partition.<i>` is bound with the key "i": the
worker computes a command's partition itself (`worker.domain.order.partition_of`), so the same
key goes to the same partition on every node and across restarts. RabbitMQ's consistent-hash
exchange does not: it rebuilds its ring from the bindings in recovery order when a node restarts
(308 of 400 keys moved to another partition after one restart of 3.10, measured), and each node
of a cluster keeps its own ring. With P = 1 there is no hop: `Q` is its own single partition.
Two queues that never hold a message carry membership: every process consumes `Q.members` while
it is connected (its consumer count is the number of live processes), and `Q.hungry` while it
holds fewer partitions than its share (see `ownership.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Partitions:
    """The partitions of the command queue `queue`: `count` of them."""

    queue: str
    count: int

    @property
    def routed(self) -> bool:
        """Whether commands go through a routing stage (more than one partition)."""
        return self.count > 1

    @property
    def exchange(self) -> str:
        return f"{self.queue}.partitions"

    def name(self, index: int) -> str:
        return f"{self.queue}.partition.{index}" if self.routed else self.queue

    @property
    def names(self) -> list[str]:
        return [self.name(index) for index in range(self.count)]

    @property
    def members(self) -> str:
        return f"{self.queue}.members"

    @property
    def hungry(self) -> str:
        return f"{self.queue}.hungry"

    def queue_names(self) -> list[str]:
        """The queues these partitions add beside the command queue."""
        partitions = self.names if self.routed else []
        return [*partitions, self.members, self.hungry]


def signal_queue_arguments(queue_type: str) -> dict[str, Any]:
    """`members` and `hungry` hold no messages, but every process must reach them whichever
    node it is on: of the queue type of the rest. A classic queue lives on the node that
    declared it, so while that node was down or cut off no process could declare or consume
    it, and none could work at all (found on a three-node cluster: NOT_FOUND, "home node ... of
    durable queue '<queue>.members' ... is down or inaccessible")."""
    return {"x-queue-type": queue_type}


SINGLE_ACTIVE: dict[str, Any] = {"x-single-active-consumer": True}
"""Quorum command and partition queues only: quorum queues ignore the exclusive flag of
`basic.consume` (measured on RabbitMQ 3.10), so there the broker keeps one active consumer
through this argument instead. Classic queues must not have it: a classic single-active
queue refuses exclusive consumers."""
