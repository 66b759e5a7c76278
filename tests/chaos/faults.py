"""The faults of a chaos run: the worker process killed with SIGKILL and restarted, the broker
restarted (or, for development, its connections cut through a proxy), the database made
unreachable through a proxy. One worker process runs at a time, so each queue is still applied
in queue order by one process, which is what the reference model assumes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from tests.chaos.harness import until
from tests.integration.proxy import TcpProxy

BrokerFault = Literal["restart", "proxy"]


@dataclass(frozen=True)
class FaultPlan:
    """When each fault strikes, as the share of the stream answered by then (seeded)."""

    kills: tuple[float, ...]
    broker: tuple[float, ...]
    database: tuple[float, ...]

    @classmethod
    def drawn(cls, seed: int, kills: int, broker: int, database: int) -> FaultPlan:
        chance = random.Random(seed * 7919 + 1)
        points = sorted(chance.uniform(0.08, 0.75) for _ in range(kills + broker + database))
        chance.shuffle(points)
        return cls(
            tuple(sorted(points[:kills])),
            tuple(sorted(points[kills : kills + broker])),
            tuple(sorted(points[kills + broker :])),
        )

    def in_order(self) -> list[tuple[float, str]]:
        faults = [(p, "kill") for p in self.kills] + [(p, "broker") for p in self.broker]
        return sorted(faults + [(p, "database") for p in self.database])


@dataclass
class WorkerProcess:
    """`python -m worker run` with `env`; killed and restarted on demand, one at a time.

    An exit it did not cause counts as a crash and the worker is started again. The peak RSS
    (VmHWM) of every process it ran is sampled while it runs and before it is killed.
    """

    env: Mapping[str, str]
    log_path: Path
    starts: int = 0
    kills: int = 0
    crashes: int = 0
    peak_rss_mib: float = 0.0
    _process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None
    _expected_exit: bool = False
    _watch: asyncio.Task[None] | None = None
    _exits: list[int] = field(default_factory=list)

    async def start(self) -> None:
        self._log = self._log or self.log_path.open("ab")
        self._expected_exit = False
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=dict(self.env), stderr=self._log
        )
        self.starts += 1
        self._watch = asyncio.create_task(self._watched(self._process))

    async def kill(self, restart_after: float) -> None:
        """SIGKILL: no shutdown, nothing acked; the broker redelivers its unacked messages."""
        process = self._running()
        self._sample(process.pid)
        self._expected_exit = True
        process.send_signal(signal.SIGKILL)
        await self._stopped()
        self.kills += 1
        await asyncio.sleep(restart_after)
        await self.start()

    async def stop(self) -> None:
        """SIGTERM: the graceful shutdown, at the end of a run."""
        if self._process is None or self._process.returncode is not None:
            return
        self._sample(self._process.pid)
        self._expected_exit = True
        self._process.terminate()
        try:
            await asyncio.wait_for(self._stopped(), 60)
        except TimeoutError:
            self._process.kill()
            await self._stopped()
        if self._log is not None:
            self._log.close()

    def _running(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "start the worker first"
        return self._process

    async def _stopped(self) -> None:
        if self._watch is not None:
            await self._watch

    async def _watched(self, process: asyncio.subprocess.Process) -> None:
        """Sample the process while it runs; restart it if it exits on its own."""
        while process.returncode is None:
            self._sample(process.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 1.0)
        self._exits.append(process.returncode)
        if not self._expected_exit:
            self.crashes += 1
            await asyncio.sleep(1.0)
            await self.start()

    def _sample(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mib = max(self.peak_rss_mib, int(line.split()[1]) / 1024)


async def restart_broker() -> float:
    """Restart the RabbitMQ application (`stop_app`, `start_app`): every connection drops,
    durable queues and persistent messages stay. Returns how long it was down."""
    started = time.monotonic()
    for arguments in (["stop_app"], ["start_app"], ["await_startup", "--timeout", "120"]):
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            *arguments,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {arguments[0]}: {errors.decode().strip()}")
    return time.monotonic() - started


async def cut_for(proxy: TcpProxy, seconds: float) -> float:
    """Drop every connection through `proxy` and refuse new ones for `seconds`."""
    await proxy.cut()
    await asyncio.sleep(seconds)
    await proxy.start()
    return seconds


@dataclass
class Faults:
    """Runs a `FaultPlan` against a worker while `progress()` (the share answered) grows."""

    plan: FaultPlan
    worker: WorkerProcess
    progress: Callable[[], float]
    database: TcpProxy
    database_seconds: float
    broker: BrokerFault
    broker_proxy: TcpProxy | None = None
    broker_seconds: float = 5.0
    seed: int = 0
    restart_delay: tuple[float, float] = (0.0, 1.0)
    """Seconds between a kill and the restart, drawn from this range."""
    unpaced: asyncio.Event = field(default_factory=asyncio.Event)
    log: list[str] = field(default_factory=list)
    broker_restarts: int = 0
    database_cuts: int = 0

    async def run(self) -> None:
        chance = random.Random(self.seed * 31 + 7)
        for point, fault in self.plan.in_order():
            await until(functools.partial(self._reached, point))
            await asyncio.sleep(chance.uniform(0, 0.5))  # not always at a batch boundary
            started = time.monotonic()
            if fault == "kill":
                await self.worker.kill(restart_after=chance.uniform(*self.restart_delay))
            elif fault == "broker":
                await self._broker()
            else:
                await cut_for(self.database, self.database_seconds)
                self.database_cuts += 1
            took = time.monotonic() - started
            self.log.append(f"{fault} at {point:.0%} answered ({took:.1f} s)")

    def _reached(self, point: float) -> bool:
        return self.progress() >= point

    async def _broker(self) -> None:
        """The producer publishes without pause meanwhile (`unpaced`), so that the broker
        leaves some of its messages unconfirmed: those it publishes again."""
        self.unpaced.set()
        await asyncio.sleep(0.1)
        try:
            if self.broker == "restart":
                await restart_broker()
            else:
                assert self.broker_proxy is not None
                await cut_for(self.broker_proxy, self.broker_seconds)
        finally:
            self.unpaced.clear()
        self.broker_restarts += 1
