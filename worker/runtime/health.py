"""What the worker knows of its own health, for /healthz, /readyz and the `_up` gauges.

The event loop writes these fields and the HTTP thread only reads them, so plain attributes
suffice: every value is replaced whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from worker.observability import BROKER_UP, STORE_UP

LOOP_STALL_SECONDS = 30.0
"""/healthz fails when the event loop has not ticked for this long: the process is stuck."""


@dataclass
class Health:
    broker_connected: bool = False
    consumers_expected: int = 0
    consumers_running: int = 0
    store_reachable: bool = False
    heartbeat: float = field(default_factory=time.monotonic)
    partitions: dict[str, list[int]] = field(default_factory=dict)
    """The partitions this process consumes, by command queue (none: it stands by)."""
    routing: list[str] = field(default_factory=list)
    """The command queues whose routing stage runs in this process."""

    def store(self, reachable: bool) -> None:
        self.store_reachable = reachable
        STORE_UP.set(1 if reachable else 0)

    def broker(self, connected: bool, consumers: int = 0) -> None:
        self.broker_connected = connected
        self.consumers_running = consumers if connected else 0
        BROKER_UP.set(1 if connected else 0)

    def tick(self) -> None:
        self.heartbeat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.heartbeat < LOOP_STALL_SECONDS

    def checks(self) -> dict[str, Any]:
        """Each condition of readiness, by name."""
        return {
            "broker_connected": self.broker_connected,
            "consumers_running": self.consumers_expected > 0
            and self.consumers_running == self.consumers_expected,
            "database_reachable": self.store_reachable,
        }

    def ready(self) -> bool:
        return all(self.checks().values())

    def report(self) -> dict[str, Any]:
        """/readyz's body: each condition, and what this process holds. A process holding no
        partition stands by, ready to take one over: it is ready all the same."""
        return {**self.checks(), "partitions": self.partitions, "routing": self.routing}
