"""Scale-out with partitions (PW_PARTITIONS): what one, two and three processes drain, what the
routing stage moves alone, and the CPU each command costs, all in one run on one broker and
one database server.

    python -m bench.scale_out --messages N --mongodb-url URL [--before-commit REV]

Every part uses the import mix of bench/mix.py (N commands, all with message ids) and its own
queues, exchanges and database (tests/integration/conftest.py `isolated_settings`), removed at
its end. The parts, in the order they run:

- raw broker: bench/raw_broker.py for the same N with the worker's fan-out (2: an import of
  the mix answers and emits one event), the broker's ceiling with no database and no domain.
- bench.run: bench/run.py's own worker figure (`worker_end_to_end`: commands queued, then one
  `python -m worker run` started, its results read as they come, rate from the first result to
  the last), in this run, beside the others.
- before (only with `--before-commit`, e.g. the commit before partitions): the same one-process
  drain as "default" below, by the worker of that commit (`git archive` into a temporary
  directory, which the process is started in, so its `worker` package is the one imported).
- default: one process with default settings (P = 1: it consumes the command queue itself,
  exclusively; no hop).
- P = 8, 1 / 2 / 3 processes: the commands are published straight to the partition exchange
  `<queue>.partitions` with routing key `worker.domain.order.routing_key("imports", body, P)`,
  as a producer that can does, so the routing hop is not in these figures.
- routing alone: N commands in the command queue, one process with P = 8 that only routes. The
  bench declares the topology first and holds every import partition with an exclusive
  consumer of its own (prefetch 1, never acked): the worker sees each partition with a
  consumer, takes none (its exclusive consume would be refused anyway), stands hungry, and
  routes the command queue, whose consumer count is 0. The rate is that of the partitions'
  depth (ready, plus the 8 deliveries the holders keep) growing to N.

How a drain is measured, the same for every part but bench.run's: the processes are started,
and the bench waits (bounded) until each is ready (/readyz on a port of its own) and the
partitions are balanced: the holdings of the import queue's partitions are disjoint, cover
them all and are within one of P / W per process, one process routes, `<queue>.members` counts
W consumers and each partition one (a worker from before partitions has no holdings in its
/readyz: it is ready once it answers 200 and its queue has a consumer). Then every process is
stopped (SIGSTOP), the N commands are published with pipelined confirms, and the processes are
continued (SIGCONT): the publisher's CPU does not compete with the workers on this machine's
cores, and every process starts on a full backlog at once. The drain is watched by the depth
of the result queue (nothing reads it during the drain; passive declares every 20 ms), and the
rate counts from the first result to the last, as bench.run does. Afterwards every result is
read and must be `error: 0`.

CPU: utime + stime of /proc/<pid>/stat (clock ticks) of every worker process, read just before
SIGCONT and when the drain ends, summed and divided by N. The broker's (beam.smp) and the
database server's (the process listening on the URL's port) over the same span are shown
beside, and how busy the whole machine was (/proc/stat), since everything shares its cores.
From each process's /metrics at the end: its import batches (count, mean size) and the commands
it carried unacked into a later batch, summed.

Bounded throughout: readiness waits at most READY_TIMEOUT_SECONDS, a drain at most
30 s + N / MIN_DRAIN_RATE, a stop STOP_TIMEOUT_SECONDS before SIGKILL; SIGTERM to the bench
cancels it, and every part still stops the processes it started and removes what it made.

With PW_BENCH_PROFILE_DIR=DIR, py-spy samples every worker process during each drain into
DIR/<part>-<n>.txt (raw collapsed stacks, 100 Hz, idle time included); it costs CPU, so such a
run's figures are for finding where the time goes, not for keeping.

The three checks of the issue: three processes' summed CPU per command at most 1.1 x one
process's (both at P = 8); the routing stage alone at least 2.5 x one process's rate (one
process at P = 8); one process with default settings within 10 % of bench.run's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
import orjson
import uvloop
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic
from pymongo import AsyncMongoClient

from bench.mix import commands
from bench.raw_broker import raw_broker
from bench.run import cpu_ticks, peak_rss_mib, worker_end_to_end
from tests.integration.conftest import delete_topology, isolated_settings
from worker.cli.common import load_catalog
from worker.domain.order import routing_key
from worker.runtime.partitions import Partitions
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

PARTITIONS = 8
PUBLISH_WINDOW = 1_000
POLL_SECONDS = 0.02
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 40.0
CLEANUP_SECONDS = 120.0
MIN_DRAIN_RATE = 50.0
"""A drain slower than this (commands per second) is taken as stuck: the wait ends in error."""
TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One line of the table."""

    label: str
    processes: int
    partitions: int
    published_to: str
    rate: float
    seconds: float = math.nan
    worker_ticks: int | None = None
    broker_ticks: int | None = None
    database_ticks: int | None = None
    busy: float | None = None
    """How busy the machine's cores were during the drain, 0..1."""
    load: str = "-"
    """The 1-minute load average when the drain began."""
    peak_rss_mib: float | None = None
    holdings: list[list[int]] = field(default_factory=list)
    batches: float | None = None
    """Import batches the processes handled (their /metrics), summed."""
    batched: float | None = None
    """Commands in those batches: carried ones count again in each batch they are in."""
    carried: float | None = None
    """Commands carried unacked into a later batch (`profile_worker_deferred_total`)."""


# ---- processes and /proc --------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def service_pid(match: Callable[[list[str]], bool]) -> int | None:
    """The first process whose command line (argv) `match`es; None if there is none."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if match([a.decode(errors="replace") for a in argv if a]):
            return int(entry.name)
    return None


def broker_pid() -> int | None:
    return service_pid(lambda argv: bool(argv) and argv[0].endswith("beam.smp"))


def database_pid(mongodb_url: str) -> int | None:
    """The process serving the URL's port: mongo-java-server's launcher takes it as an
    argument (other servers as `host:port`)."""
    port = str(urlsplit(mongodb_url).port or 27017)
    return service_pid(
        lambda argv: (
            bool(argv)
            and "python" not in argv[0]
            and any(a == port or a.endswith(f":{port}") for a in argv[1:])
        )
    )


def load_average() -> str:
    """The 1-minute load average (the first field of /proc/loadavg)."""
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().split()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Spawned:
    process: asyncio.subprocess.Process
    port: int
    log: Path


class Workers:
    """`python -m worker run` processes of this run, each serving /readyz on a port of its own."""

    def __init__(self, settings: Settings, logs: Path, cwd: Path = REPO) -> None:
        self._settings = settings
        self._logs = logs
        self._cwd = cwd
        self.spawned: list[Spawned] = []
        self._samplers: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self.spawned]

    async def start(self, count: int) -> None:
        for _ in range(count):
            port = free_port()
            log = self._logs / f"worker-{len(self.spawned)}-{port}.log"
            env = {
                **os.environ,
                **self._settings.as_environment(),
                "PW_METRICS_PORT": str(port),
            }
            with log.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "worker",
                    "run",
                    env=env,
                    cwd=self._cwd,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                )
            self.spawned.append(Spawned(process, port, log))

    def check_alive(self) -> None:
        for spawned in self.spawned:
            if spawned.process.returncode is not None:
                tail = spawned.log.read_text(errors="replace")[-2_000:]
                raise RuntimeError(
                    f"worker {spawned.process.pid} exited ({spawned.process.returncode}):\n{tail}"
                )

    def signal_all(self, signum: signal.Signals) -> None:
        for spawned in self.spawned:
            if spawned.process.returncode is None:
                spawned.process.send_signal(signum)

    async def profile(self, label: str) -> None:
        """With PW_BENCH_PROFILE_DIR=DIR, py-spy samples each process (raw collapsed stacks,
        DIR/<label>-<n>.txt) until `unprofile`; the figures of a profiled run are not kept."""
        into = os.environ.get("PW_BENCH_PROFILE_DIR")
        if not into:
            return
        name = "".join(c if c.isalnum() else "_" for c in label)
        for n, pid in enumerate(self.pids):
            self._samplers.append(
                await asyncio.create_subprocess_exec(
                    *(str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw"),
                    *("--rate", "100", "--idle", "--pid", str(pid), "-o", f"{into}/{name}-{n}.txt"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )

    async def unprofile(self) -> None:
        for sampler in self._samplers:
            sampler.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sampler.wait(), 30)
        self._samplers.clear()

    async def batches(self, figure: Figure, queue: str) -> None:
        """Sum the processes' import batch figures into `figure`."""
        scraped = await asyncio.gather(
            *(asyncio.to_thread(scrape, s.port, queue) for s in self.spawned)
        )
        for key in ("batches", "batched", "carried"):
            setattr(figure, key, sum(one.get(key, 0.0) for one in scraped))

    async def ready(self) -> list[dict[str, Any] | None]:
        """Each process's /readyz body when it answers 200, else None."""
        return list(
            await asyncio.gather(*(asyncio.to_thread(_readyz, s.port) for s in self.spawned))
        )

    async def stop(self) -> None:
        """SIGTERM (after SIGCONT, should they be stopped), then SIGKILL past the timeout; only
        the processes this run started, by their own handles."""
        self.signal_all(signal.SIGCONT)
        self.signal_all(signal.SIGTERM)
        for spawned in self.spawned:
            try:
                await asyncio.wait_for(spawned.process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                spawned.process.kill()
                await spawned.process.wait()


def scrape(port: int, queue: str) -> dict[str, float]:
    """The import batches' count and size sum and the carried commands of one process, from
    its /metrics; empty when it does not answer."""
    wanted = {
        "profile_worker_batch_size_count": "batches",
        "profile_worker_batch_size_sum": "batched",
        "profile_worker_deferred_total": "carried",
    }
    label = f'queue="{queue}"'
    found: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return found
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in wanted and label in rest:
            key = wanted[name]
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def _readyz(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            body: dict[str, Any] = orjson.loads(answer.read())
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


# ---- the broker -------------------------------------------------------------------------------


async def depth(channel: AbstractChannel, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, by a passive declare."""
    ok = await channel.queue_declare(queue, passive=True)
    return ok.message_count or 0, ok.consumer_count or 0


async def publish(
    connection: AbstractConnection, messages: Sequence[tuple[str, str, str, bytes]]
) -> None:
    """(exchange, routing key, message id, body) tuples, persistent, with pipelined confirms."""
    channel = await connection.channel(publisher_confirms=True)
    for start in range(0, len(messages), PUBLISH_WINDOW):
        await asyncio.gather(
            *(
                channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=key,
                    properties=Basic.Properties(
                        delivery_mode=2,
                        content_type="application/json",
                        message_id=message_id,
                        correlation_id=message_id,
                    ),
                )
                for exchange, key, message_id, body in messages[start : start + PUBLISH_WINDOW]
            )
        )
    await channel.close()


def mix(count: int) -> list[tuple[str, bytes]]:
    """(message id, body) of the bench mix."""
    return [(message_id or "", orjson.dumps(body)) for message_id, body in commands(count)]


async def read_results(connection: AbstractConnection, queue: str, count: int) -> int:
    """Take `count` results off `queue`; the number that were not `error: 0`."""
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=2_000)
    seen = 0
    failed = 0
    done = asyncio.Event()

    async def on_result(message: DeliveredMessage) -> None:
        nonlocal seen, failed
        seen += 1
        failed += orjson.loads(message.body).get("error") != 0
        if seen >= count:
            done.set()

    await channel.basic_consume(queue, on_result, no_ack=True)
    await asyncio.wait_for(done.wait(), 60 + count / 1_000)
    await channel.close()
    return failed


@dataclass
class Drain:
    first_at: float
    first_depth: int
    done_at: float

    def rate(self, count: int) -> float:
        elapsed = self.done_at - self.first_at
        return (count - self.first_depth) / elapsed if elapsed > 0 else math.nan


async def watch(
    channel: AbstractChannel,
    queues: Sequence[str],
    count: int,
    workers: Workers,
    held: Callable[[], int] = lambda: 0,
) -> Drain:
    """Poll the queues' total depth (plus `held`) until it reaches `count`. It must keep
    moving: the wait ends in error past 30 s + count / MIN_DRAIN_RATE or if a worker dies."""
    started = time.perf_counter()
    deadline = started + 30 + count / MIN_DRAIN_RATE
    first: tuple[float, int] | None = None
    while True:
        total = held()
        for queue in queues:
            total += (await depth(channel, queue))[0]
        now = time.perf_counter()
        if total and first is None:
            first = (now, total)
        if total >= count:
            assert first is not None
            return Drain(first[0], first[1], now)
        workers.check_alive()
        if now > deadline:
            raise TimeoutError(f"{total} of {count} after {now - started:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


# ---- readiness --------------------------------------------------------------------------------


Condition = Callable[[list[dict[str, Any] | None]], Awaitable[bool]]


async def wait_until(workers: Workers, condition: Condition, what: str) -> list[dict[str, Any]]:
    """Until `condition` holds on the processes' /readyz bodies twice in a row, a poll period
    apart (a holding that is about to change is not taken as balanced)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    streak = 0
    while time.monotonic() < deadline:
        workers.check_alive()
        bodies = await workers.ready()
        streak = streak + 1 if await condition(bodies) else 0
        if streak == 2:
            return [body for body in bodies if body is not None]
        await asyncio.sleep(1.0)
    raise TimeoutError(f"workers not {what} within {READY_TIMEOUT_SECONDS:.0f} s")


def holdings(bodies: Sequence[dict[str, Any] | None], queue: str) -> list[list[int]] | None:
    if any(body is None for body in bodies):
        return None
    return [sorted(body.get("partitions", {}).get(queue, [])) for body in bodies if body]


def routers(bodies: Sequence[dict[str, Any] | None], queue: str) -> int:
    return sum(queue in body.get("routing", []) for body in bodies if body)


def balanced(held: list[list[int]], partitions: int) -> bool:
    """Disjoint, covering every partition, within one of P / W each."""
    flat = [index for indices in held for index in indices]
    floor, ceil = partitions // len(held), -(-partitions // len(held))
    return sorted(flat) == list(range(partitions)) and all(
        floor <= len(indices) <= ceil for indices in held
    )


def partitioned_condition(channel: AbstractChannel, settings: Settings, workers: int) -> Condition:
    partitions = Partitions(settings.import_queue, settings.partitions)

    async def condition(bodies: list[dict[str, Any] | None]) -> bool:
        held = holdings(bodies, partitions.queue)
        if held is None or not balanced(held, partitions.count):
            return False
        if partitions.routed and routers(bodies, partitions.queue) != 1:
            return False
        if (await depth(channel, partitions.members))[1] != workers:
            return False
        consumers = [(await depth(channel, name))[1] for name in partitions.names]
        return consumers == [1] * partitions.count

    return condition


def consumed_condition(channel: AbstractChannel, queue: str) -> Condition:
    """Every process ready, and `queue` consumed (a worker from before partitions)."""

    async def condition(bodies: list[dict[str, Any] | None]) -> bool:
        return all(bodies) and (await depth(channel, queue))[1] == 1

    return condition


def routing_only_condition(channel: AbstractChannel, settings: Settings) -> Condition:
    """The one process holds no import partition and routes the import queue."""

    async def condition(bodies: list[dict[str, Any] | None]) -> bool:
        held = holdings(bodies, settings.import_queue)
        return (
            held == [[]]
            and routers(bodies, settings.import_queue) == 1
            and (await depth(channel, settings.import_queue))[1] == 1
        )

    return condition


# ---- one part ---------------------------------------------------------------------------------


class Meter:
    """CPU of the workers, the broker, the database server and the machine over one span."""

    def __init__(self, pids: Sequence[int], mongodb_url: str) -> None:
        self._pids = list(pids)
        self._broker = broker_pid()
        self._database = database_pid(mongodb_url)
        self._start = self._read()
        self.load = load_average()

    def _read(self) -> tuple[int, int | None, int | None, tuple[int, int]]:
        def ticks(pid: int | None) -> int | None:
            if pid is None:
                return None
            with contextlib.suppress(OSError):
                return cpu_ticks(pid)
            return None

        workers = sum(cpu_ticks(pid) for pid in self._pids)
        return workers, ticks(self._broker), ticks(self._database), machine_ticks()

    def end(self, figure: Figure) -> None:
        workers, broker, database, (busy, total) = self._read()
        w0, b0, d0, (busy0, total0) = self._start
        figure.worker_ticks = workers - w0
        figure.broker_ticks = broker - b0 if broker is not None and b0 is not None else None
        figure.database_ticks = database - d0 if database is not None and d0 is not None else None
        figure.busy = (busy - busy0) / (total - total0) if total > total0 else None
        figure.load = self.load


async def removed(settings: Settings) -> None:
    """Delete the part's queues and exchanges; a broker restarting meanwhile (other work on the
    shared broker) is waited for, up to CLEANUP_SECONDS."""
    deadline = time.monotonic() + CLEANUP_SECONDS
    while True:
        try:
            pika = await aio_pika.connect(settings.amqp_url, timeout=10)
            async with pika:
                await delete_topology(pika, settings)
            return
        except (aio_pika.exceptions.AMQPError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2)


class Part:
    """One drain: its settings, processes and broker connection, and their clean-up."""

    def __init__(self, base: Settings, **overrides: Any) -> None:
        self.settings = isolated_settings(
            base.amqp_url, base.mongodb_url, "scale", log_level="WARNING", **overrides
        )
        self.connection: AbstractConnection | None = None

    async def __aenter__(self) -> Part:
        self.connection = await aiormq.connect(self.settings.amqp_url)
        pika = await aio_pika.connect(self.settings.amqp_url)
        async with pika:
            await declare(await pika.channel(), self.settings)
        store = MongoStore.from_settings(self.settings)
        await store.catalog.apply(load_catalog(REPO / "examples/catalog.yaml"))
        await store.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # a broker restart closed it already
                await self.connection.close()
        await removed(self.settings)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.settings.mongodb_url)
        await client.drop_database(self.settings.mongodb_database)
        await client.close()

    @property
    def amqp(self) -> AbstractConnection:
        assert self.connection is not None
        return self.connection


async def drain(
    part: Part,
    workers: Workers,
    condition: Condition,
    messages: Sequence[tuple[str, str, str, bytes]],
    figure: Figure,
) -> None:
    """Wait for the workers, stop them, queue the messages, continue them and time the drain
    to the last result; every result must be a success."""
    settings = part.settings
    poll = await part.amqp.channel()
    bodies = await wait_until(workers, condition, "ready and balanced")
    figure.holdings = [
        sorted(b.get("partitions", {}).get(settings.import_queue, [])) for b in bodies
    ]
    workers.signal_all(signal.SIGSTOP)
    await publish(part.amqp, messages)
    meter = Meter(workers.pids, settings.mongodb_url)
    workers.signal_all(signal.SIGCONT)
    await workers.profile(figure.label)
    result = await watch(poll, [settings.import_result_queue], len(messages), workers)
    meter.end(figure)
    await workers.unprofile()
    figure.rate, figure.seconds = result.rate(len(messages)), result.done_at - result.first_at
    figure.peak_rss_mib = max(peak_rss_mib(pid) for pid in workers.pids)
    await workers.batches(figure, settings.import_queue)
    failed = await read_results(part.amqp, settings.import_result_queue, len(messages))
    if failed:
        raise RuntimeError(f"{figure.label}: {failed} commands failed")


async def one_process(base: Settings, logs: Path, count: int, tree: Path | None) -> Figure:
    """Default settings (P = 1), commands in the command queue; `tree`: another checkout."""
    label = "before (P = 1)" if tree else "default (P = 1)"
    figure = Figure(label, 1, 1, "command queue", math.nan)
    async with Part(base) as part:
        queue = part.settings.import_queue
        workers = Workers(part.settings, logs, tree or REPO)
        messages = [("", queue, mid, body) for mid, body in mix(count)]
        try:
            await workers.start(1)
            poll = await part.amqp.channel()
            condition = (
                consumed_condition(poll, queue)
                if tree
                else partitioned_condition(poll, part.settings, 1)
            )
            await drain(part, workers, condition, messages, figure)
        finally:
            await workers.stop()
    return figure


async def partitioned(base: Settings, logs: Path, count: int, processes: int) -> Figure:
    """P = 8, `processes` processes, commands published straight to the partition exchange."""
    figure = Figure(f"P = 8, {processes} process(es)", processes, PARTITIONS, "partitions", 0.0)
    async with Part(base, partitions=PARTITIONS) as part:
        exchange = Partitions(part.settings.import_queue, PARTITIONS).exchange
        messages = [
            (exchange, routing_key("imports", b, PARTITIONS), mid, b) for mid, b in mix(count)
        ]
        workers = Workers(part.settings, logs)
        try:
            await workers.start(processes)
            poll = await part.amqp.channel()
            condition = partitioned_condition(poll, part.settings, processes)
            await drain(part, workers, condition, messages, figure)
        finally:
            await workers.stop()
    return figure


async def hold(connection: AbstractConnection, queues: Sequence[str]) -> Callable[[], int]:
    """Consume each queue exclusively with prefetch 1 and never ack; returns the count of
    deliveries held. Closing the connection gives them back."""
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=1)
    received = 0

    async def on_message(message: DeliveredMessage) -> None:
        nonlocal received
        received += 1

    for queue in queues:
        await channel.basic_consume(queue, on_message, no_ack=False, exclusive=True)
    return lambda: received


async def routing_alone(base: Settings, logs: Path, count: int) -> Figure:
    """One process with P = 8 whose import partitions the bench holds: it only routes."""
    figure = Figure("routing stage alone", 1, PARTITIONS, "command queue", 0.0)
    async with Part(base, partitions=PARTITIONS) as part:
        settings = part.settings
        names = Partitions(settings.import_queue, PARTITIONS).names
        holder = await aiormq.connect(settings.amqp_url)
        workers = Workers(settings, logs)
        try:
            held = await hold(holder, names)
            await workers.start(1)
            poll = await part.amqp.channel()
            await wait_until(workers, routing_only_condition(poll, settings), "routing")
            workers.signal_all(signal.SIGSTOP)
            await publish(part.amqp, [("", settings.import_queue, m, b) for m, b in mix(count)])
            meter = Meter(workers.pids, settings.mongodb_url)
            workers.signal_all(signal.SIGCONT)
            await workers.profile(figure.label)
            result = await watch(poll, names, count, workers, held)
            meter.end(figure)
            await workers.unprofile()
            figure.rate, figure.seconds = result.rate(count), result.done_at - result.first_at
            figure.peak_rss_mib = peak_rss_mib(workers.pids[0])
        finally:
            await workers.stop()
            await holder.close()
    return figure


async def bench_run_figure(base: Settings, count: int) -> Figure:
    """bench.run's worker figure, by its own code, on names of this run (not profiled: its
    PW_BENCH_PROFILE is a file, for its own harness)."""
    async with Part(base) as part:
        try:
            rate, rss, _ = await worker_end_to_end(part.settings, count)
        except BaseException:
            await asyncio.to_thread(stop_children, part.settings.import_queue)
            raise
    return Figure("bench.run worker", 1, 1, "command queue", rate, peak_rss_mib=rss)


def stop_children(queue: str) -> None:
    """SIGTERM, by pid, the worker processes this process started for `queue` (bench.run
    leaves its worker running when its drain fails), and wait for them to go (bounded)."""
    variable = f"PW_IMPORT_QUEUE={queue}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and variable in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def exported(commit: str | None, into: Path) -> Iterator[Path | None]:
    """The repository's tree at `commit` (git archive: nothing in the repository changes)."""
    if commit is None:
        yield None
        return
    tree = into / f"tree-{commit}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    yield tree


# ---- the report -------------------------------------------------------------------------------


def per_command(ticks: int | None, count: int) -> str:
    """Milliseconds of CPU per command."""
    return f"{ticks * 1000 / TICKS / count:.3f}" if ticks is not None else "-"


def table(figures: Sequence[Figure], count: int, raw: float) -> list[str]:
    lines = [
        "| part | processes | P | published to | rate (cmd/s) | / raw broker | drain (s) "
        "| worker CPU (ms/cmd) | broker CPU (ms/cmd) | database CPU (ms/cmd) | machine busy (load) "
        "| peak RSS (MiB) | batches (mean size) | carried | import partitions held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| raw broker (fan-out 2) | - | - | queue | {spaced(raw)} | 100 % | - | - | - | - | - | - "
        "| - | - | - |",
    ]
    for f in figures:
        busy = f"{100 * f.busy:.0f} %" if f.busy is not None else "-"
        rss = f"{f.peak_rss_mib:.1f}" if f.peak_rss_mib is not None else "-"
        seconds = f"{f.seconds:.1f}" if not math.isnan(f.seconds) else "-"
        held = " / ".join(",".join(map(str, h)) or "none" for h in f.holdings) or "-"
        lines.append(
            f"| {f.label} | {f.processes} | {f.partitions} | {f.published_to} | {spaced(f.rate)} "
            f"| {100 * f.rate / raw:.0f} % | {seconds} | {per_command(f.worker_ticks, count)} "
            f"| {per_command(f.broker_ticks, count)} | {per_command(f.database_ticks, count)} "
            f"| {busy} ({f.load}) | {rss} | {batch_figures(f)} | {held} |"
        )
    return lines


def batch_figures(figure: Figure) -> str:
    """'batches (mean size) | carried', or dashes where the processes gave none."""
    if not figure.batches or figure.batched is None:
        return "- | -"
    return f"{figure.batches:.0f} ({figure.batched / figure.batches:.0f}) | {figure.carried:.0f}"


def spaced(rate: float) -> str:
    """A rate in whole commands, thousands apart by a space (as bench/RESULTS.md writes)."""
    return f"{rate:,.0f}".replace(",", " ")


def checks(figures: dict[str, Figure]) -> list[str]:
    one, three = figures["P = 8, 1 process(es)"], figures["P = 8, 3 process(es)"]
    routing, default = figures["routing stage alone"], figures["default (P = 1)"]
    reference = figures["bench.run worker"]
    assert one.worker_ticks is not None
    assert three.worker_ticks is not None
    cpu = three.worker_ticks / one.worker_ticks
    routed = routing.rate / one.rate
    versus = default.rate / reference.rate
    lines = [
        f"1. CPU per command, 3 processes / 1 process (P = 8): {cpu:.2f} x (target <= 1.10): "
        + ("met" if cpu <= 1.1 else "MISSED"),
        f"2. routing stage alone / one process (P = 8): {routed:.2f} x (target >= 2.5; "
        f"/ default one process: {routing.rate / default.rate:.2f} x): "
        + ("met" if routed >= 2.5 else "MISSED"),
        f"3. one process, default settings / bench.run's worker: {versus:.2f} x "
        f"(target >= 0.90): " + ("met" if versus >= 0.9 else "MISSED"),
    ]
    if before := figures.get("before (P = 1)"):
        lines.append(
            f"   beside: default / the commit before partitions, same harness: "
            f"{default.rate / before.rate:.2f} x"
        )
    return lines


async def main(count: int, mongodb_url: str | None, before: str | None) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM (e.g. `timeout`) cancels the run, so every part stops its processes and cleans up.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    base = Settings()
    base = base.model_copy(update={"mongodb_url": mongodb_url}) if mongodb_url else base
    started, load = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_average()
    body = orjson.dumps(commands(1)[0][1])
    with (
        tempfile.TemporaryDirectory(prefix="scale_out_") as scratch,
        exported(before, Path(scratch)) as tree,
    ):
        logs = Path(scratch)
        raw = await raw_broker(base.amqp_url, body, count)
        figures = [await bench_run_figure(base, count)]
        if tree is not None:
            figures.append(await one_process(base, logs, count, tree))
        figures.append(await one_process(base, logs, count, None))
        for processes in (1, 2, 3):
            figures.append(await partitioned(base, logs, count, processes))
        figures.append(await routing_alone(base, logs, count))
    print(f"messages {count}, mongodb {base.mongodb_url}, started {started}, load {load}")
    print(f"load average at the end: {load_average()}")
    print("\n".join(table(figures, count, raw)))
    print("\n".join(checks({f.label: f for f in figures})))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    parser.add_argument(
        "--before-commit", help="also drain with the worker of this commit (e.g. 4249797)"
    )
    arguments = parser.parse_args()
    uvloop.run(main(arguments.messages, arguments.mongodb_url, arguments.before_commit))
