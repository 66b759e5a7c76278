"""The faults of a chaos run: a worker process killed with SIGKILL and restarted, the broker
restarted (or, for development, its connections cut through a proxy), the database made
unreachable through a proxy, and with several processes a process joining and one leaving
with SIGTERM (scale up, scale down).

The worker runs as a pool of `python -m worker run` processes sharing the command queues' P
partitions (one process by default). Each partition is consumed by one process at a time and
a dead process's partitions are taken over, so the commands of one order key are still
applied in queue order, which is what the reference model assumes. A kill strikes one live
process, drawn from the run's seed; the broker restart and the database cut strike them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import orjson

from tests.chaos.cluster import Cluster, NodeFault
from tests.chaos.harness import until
from tests.integration.proxy import TcpProxy

BrokerFault = Literal["restart", "proxy"]

HANDOFF_MESSAGES = ("partition taken", "partition released")
"""What `worker.runtime.ownership` logs (INFO) when it takes or hands over a partition (with
P = 1: the command queue itself)."""

SETTLED_SECONDS = 5.0
"""How long a process must have run before it may leave (a worker is ready in 1 to 3 s)."""


Fault = Literal["kill", "broker", "database", "join", "leave", "node"]


@dataclass(frozen=True)
class FaultPlan:
    """When each fault strikes, as the share of the stream answered by then (seeded)."""

    kills: tuple[float, ...]
    broker: tuple[float, ...]
    database: tuple[float, ...]
    joins: tuple[float, ...] = ()
    """A process more is started (scale up)."""
    leaves: tuple[float, ...] = ()
    """A live process is stopped with SIGTERM and not restarted (scale down)."""
    nodes: tuple[float, ...] = ()
    """A fault of a cluster's nodes (`Faults.node_faults`, in turn)."""

    @classmethod
    def drawn(
        cls,
        seed: int,
        kills: int,
        broker: int,
        database: int,
        joins: int = 0,
        leaves: int = 0,
        nodes: int = 0,
    ) -> FaultPlan:
        """Joins, leaves and node faults are drawn apart, so a plan without them is the one it
        always was. Node faults take long (tens of seconds): each gets a band of the stream of
        its own, so that each strikes a stream still flowing."""
        chance = random.Random(seed * 7919 + 1)
        points = sorted(chance.uniform(0.08, 0.75) for _ in range(kills + broker + database))
        chance.shuffle(points)
        scaling = random.Random(seed * 7919 + 2)
        moves = [scaling.uniform(0.08, 0.75) for _ in range(joins + leaves)]
        return cls(
            tuple(sorted(points[:kills])),
            tuple(sorted(points[kills : kills + broker])),
            tuple(sorted(points[kills + broker :])),
            tuple(sorted(moves[:joins])),
            tuple(sorted(moves[joins:])),
            tuple(cls._banded(random.Random(seed * 7919 + 3), nodes)),
        )

    @staticmethod
    def _banded(chance: random.Random, count: int) -> list[float]:
        width = 0.7 / max(count, 1)
        return [0.05 + width * (i + chance.uniform(0, 0.25)) for i in range(count)]

    def in_order(self) -> list[tuple[float, Fault]]:
        faults: list[tuple[float, Fault]] = [(p, "kill") for p in self.kills]
        faults += [(p, "broker") for p in self.broker]
        faults += [(p, "database") for p in self.database]
        faults += [(p, "join") for p in self.joins]
        faults += [(p, "leave") for p in self.leaves]
        faults += [(p, "node") for p in self.nodes]
        return sorted(faults)


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
    forced: bool = False
    """Whether `stop` had to kill it: SIGTERM did not end it within the minute."""
    started_at: float = 0.0
    """When it was last started (monotonic)."""
    _process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None
    _expected_exit: bool = False
    _watch: asyncio.Task[None] | None = None
    _exits: list[int] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        """Running, and not being stopped or killed."""
        running = self._process is not None and self._process.returncode is None
        return running and not self._expected_exit

    @property
    def exits(self) -> list[int]:
        """The exit codes of every process it ran, in order (-9: killed)."""
        return list(self._exits)

    async def start(self) -> None:
        self._log = self._log or self.log_path.open("ab")
        self._expected_exit = False
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=dict(self.env), stderr=self._log
        )
        self.started_at = time.monotonic()
        self.starts += 1
        self._watch = asyncio.create_task(self._watched(self._process))

    async def kill(self, restart_after: float) -> None:
        """SIGKILL: no shutdown, nothing acked; the broker redelivers its unacked messages."""
        process = self._running()
        self._sample(process.pid)
        self._expected_exit = True
        with contextlib.suppress(ProcessLookupError):  # it ended just now: killed all the same
            process.send_signal(signal.SIGKILL)
        await self._stopped()
        self.kills += 1
        await asyncio.sleep(restart_after)
        await self.start()

    async def stop(self) -> None:
        """SIGTERM: the graceful shutdown, at the end of a run or when a process leaves."""
        while self._restarting():
            assert self._watch is not None
            await self._watch  # a crashed process is started again first, then stopped
        if self._process is None or self._process.returncode is not None:
            self._close_log()
            return
        self._sample(self._process.pid)
        self._expected_exit = True
        self._process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped()), 60)
        except TimeoutError:
            self.forced = True
            self._process.kill()
            await self._stopped()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logged(self, messages: Collection[str]) -> Counter[str]:
        """How often its log (JSON lines) has each of `messages`."""
        found: Counter[str] = Counter()
        with contextlib.suppress(OSError), self.log_path.open("rb") as lines:
            for line in lines:
                if line.startswith(b"{"):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        message = orjson.loads(line).get("msg")
                        if message in messages:
                            found[message] += 1
        return found

    def _restarting(self) -> bool:
        """It exited on its own and its watcher is about to start it again."""
        ended = self._process is not None and self._process.returncode is not None
        return ended and self._watch is not None and not self._watch.done()

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
            self._expected_exit = True  # until restarted: no kill or leave picks it meanwhile
            await asyncio.sleep(1.0)
            await self.start()

    def _sample(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mib = max(self.peak_rss_mib, int(line.split()[1]) / 1024)


@dataclass
class WorkerPool:
    """`size` worker processes with one `env`, each logging to `worker-<n>.log` in `log_dir`.

    A kill strikes one live process drawn from `seed` and restarts it; `join` starts one
    more; `leave` stops one live process with SIGTERM for good (never the last one). Counts
    are summed over the processes, crashes also kept per process, the peak RSS is the highest
    of them.
    """

    env: Mapping[str, str]
    log_dir: Path
    size: int = 1
    seed: int = 0
    processes: list[WorkerProcess] = field(default_factory=list)
    """Every process the pool ran, those that left included, in the order they joined."""
    joins: int = 0
    leaves: int = 0
    _chance: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._chance = random.Random(self.seed * 131 + 3)

    async def start(self) -> None:
        for _ in range(self.size):
            await self._started()

    def live(self) -> list[WorkerProcess]:
        return [process for process in self.processes if process.alive]

    async def kill(self, restart_after: float) -> int:
        """SIGKILL to one live process, started again after `restart_after`; its index."""
        process = await self._picked()
        await process.kill(restart_after)
        return self.processes.index(process)

    async def join(self) -> int:
        """Scale up: one process more; its index."""
        process = await self._started()
        self.joins += 1
        return self.processes.index(process)

    async def leave(self) -> int:
        """Scale down: SIGTERM to one live process, which hands its partitions over and is
        not started again; its index. Only a process up for `SETTLED_SECONDS` is picked: one
        still importing its modules has no signal handler yet and dies of SIGTERM."""
        process = await self._picked(SETTLED_SECONDS)
        await process.stop()
        self.leaves += 1
        return self.processes.index(process)

    async def stop(self) -> None:
        await asyncio.gather(*(process.stop() for process in self.processes))

    async def _started(self) -> WorkerProcess:
        name = f"worker-{len(self.processes)}.log"
        process = WorkerProcess(self.env, self.log_dir / name)
        self.processes.append(process)
        await process.start()
        return process

    async def _picked(self, up_for: float = 0.0) -> WorkerProcess:
        """A live process up for `up_for` seconds, drawn from the seed (waiting for one while
        none is)."""

        def candidates() -> list[WorkerProcess]:
            now = time.monotonic()
            return [process for process in self.live() if now - process.started_at >= up_for]

        await until(lambda: bool(candidates()))
        return self._chance.choice(candidates())

    @property
    def starts(self) -> int:
        return sum(process.starts for process in self.processes)

    @property
    def kills(self) -> int:
        return sum(process.kills for process in self.processes)

    @property
    def crashes(self) -> int:
        return sum(process.crashes for process in self.processes)

    @property
    def crashes_by_process(self) -> list[int]:
        return [process.crashes for process in self.processes]

    @property
    def forced(self) -> int:
        """Processes SIGTERM did not end within the minute (killed instead)."""
        return sum(process.forced for process in self.processes)

    @property
    def unclean_exits(self) -> list[tuple[int, int]]:
        """(process, exit code) of every exit neither 0 nor by SIGKILL: a SIGTERM that did not
        end a process cleanly (-15: before its handler was installed), and the crashes."""
        return [
            (index, code)
            for index, process in enumerate(self.processes)
            for code in process.exits
            if code not in (0, -signal.SIGKILL)
        ]

    @property
    def peak_rss_mib(self) -> float:
        return max((process.peak_rss_mib for process in self.processes), default=0.0)

    def handoffs(self) -> list[Counter[str]]:
        """Per process, what its log says it did with queues it consumes exclusively:
        "partition taken", "partition released" (at log level INFO or finer), by message."""
        return [process.logged(HANDOFF_MESSAGES) for process in self.processes]


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
    """Runs a `FaultPlan` against a pool of workers while `progress()` (the share answered)
    grows."""

    plan: FaultPlan
    workers: WorkerPool
    progress: Callable[[], float]
    database: TcpProxy
    database_seconds: float
    broker: BrokerFault
    broker_proxy: TcpProxy | None = None
    broker_seconds: float = 5.0
    seed: int = 0
    restart_delay: tuple[float, float] = (0.0, 1.0)
    """Seconds between a kill and the restart, drawn from this range."""
    cluster: Cluster | None = None
    node_faults: tuple[NodeFault, ...] = ()
    """Struck in turn at the plan's `nodes` points, at the queue `leading` names."""
    leading: str = ""
    unpaced: asyncio.Event = field(default_factory=asyncio.Event)
    log: list[str] = field(default_factory=list)
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    """(fault, start, end), monotonic: when each fault struck and when it was over."""
    broker_restarts: int = 0
    database_cuts: int = 0
    node_faults_struck: int = 0

    async def run(self) -> None:
        chance = random.Random(self.seed * 31 + 7)
        for point, fault in self.plan.in_order():
            await until(functools.partial(self._reached, point))
            await asyncio.sleep(chance.uniform(0, 0.5))  # not always at a batch boundary
            started = time.monotonic()
            which = ""
            if fault == "kill":
                delay = chance.uniform(*self.restart_delay)
                which = f" of process {await self.workers.kill(restart_after=delay)}"
            elif fault == "join":
                which = f" of process {await self.workers.join()}"
            elif fault == "leave":
                which = f" of process {await self.workers.leave()}"
            elif fault == "node":
                which = f": {await self._node()}"
            elif fault == "broker":
                await self._broker()
            else:
                await cut_for(self.database, self.database_seconds)
                self.database_cuts += 1
            ended = time.monotonic()
            self.windows.append((f"{fault}{which}", started, ended))
            self.log.append(f"{fault}{which} at {point:.0%} answered ({ended - started:.1f} s)")

    async def _node(self) -> str:
        assert self.cluster is not None, "node faults need a cluster"
        fault = self.node_faults[self.node_faults_struck]
        done = await self.cluster.strike(fault, self.leading)
        self.node_faults_struck += 1
        return done

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
