"""One chaos run end to end: set up, stream with faults, drain, read back, check, report.

Shared by the integration test (a small seed) and `bench/chaos.py` (by hand, at scale).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.chaos.check import Findings, check
from tests.chaos.cluster import Cluster, NodeFault
from tests.chaos.faults import BrokerFault, FaultPlan, Faults, WorkerPool
from tests.chaos.generator import Message, Mix, Queue, setup, stream
from tests.chaos.harness import (
    Collector,
    Publisher,
    connected,
    declare_topology,
    queued,
    until,
)
from tests.chaos.model import Model
from tests.integration.conftest import delete_topology, worker_environment
from tests.integration.proxy import TcpProxy, started_proxy, through
from tests.support import LIVE
from worker.runtime.topology import command_routes, partitions_of, routes
from worker.settings import Settings

WORKER: dict[str, Any] = {
    "mongodb_timeout_ms": 2_000,
    "reconnect_max_delay_seconds": 2.0,
    "retry_max_attempts": 5,
    "retry_base_delay_ms": 200,
    "retry_backoff_factor": 2.0,
    "batch_max_wait_ms": 20,
    "metrics_port": 0,
    "log_level": os.environ.get("CHAOS_LOG_LEVEL", "INFO"),  # INFO: partitions taken
}


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    commands: int
    kills: int = 2
    broker_restarts: int = 1
    database_cuts: int = 1
    database_seconds: float = 8.0
    broker: BrokerFault = "restart"
    mix: Mix = field(default_factory=Mix)
    worker: Mapping[str, Any] = field(default_factory=dict)
    """Settings of the worker beyond `WORKER`, e.g. `batch_max_size`."""
    restart_delay: tuple[float, float] = (0.0, 1.0)
    """Seconds between a kill and the restart (the lease is 5 s: a restart within it finds
    the dead worker's version reservations still held)."""
    ahead: int = 200
    """At most this many commands published and not yet answered: the stream keeps running
    through the faults instead of being queued before them."""
    timeout_seconds: float = 150.0
    processes: int = 1
    """Worker processes at once, each a `python -m worker run` (one, as before, by default):
    the partitions are shared among them, kills strike one drawn from the seed."""
    partitions: int = 1
    """P (`PW_PARTITIONS`) of each command queue. With P = 1 one process consumes a queue and
    the others stand by; with P > 1 one of them routes it into the P partition queues."""
    joins: int | None = None
    """Processes started during the stream (scale up); by default one if `processes` > 1."""
    leaves: int | None = None
    """Processes stopped with SIGTERM during the stream and not restarted (scale down); by
    default one if `processes` > 1. Never the last live one."""
    node_faults: tuple[NodeFault, ...] = ()
    """Faults of the cluster's nodes, in turn (the settings' `amqp_url` lists its nodes)."""
    isolation_seconds: float = 20.0
    node_restart_after: float = 10.0
    """Seconds between a node killed -9 and its start."""
    rate: float | None = None
    """At most this many messages (commands and their copies) published a second, besides
    `ahead`: a stream long enough for faults that take tens of seconds each."""

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError("processes must be at least 1")
        if self.scale[1] >= self.processes + self.scale[0]:
            raise ValueError("as many leaves as processes would leave none running")

    @property
    def scale(self) -> tuple[int, int]:
        """(joins, leaves) of the fault plan."""
        default = 1 if self.processes > 1 else 0
        return (
            default if self.joins is None else self.joins,
            default if self.leaves is None else self.leaves,
        )


@dataclass
class Report:
    config: ChaosConfig
    findings: Findings
    messages: int = 0
    published: int = 0
    republished: int = 0
    duplicated_ids: int = 0
    kills: int = 0
    broker_restarts: int = 0
    database_cuts: int = 0
    joins: int = 0
    leaves: int = 0
    crashes: int = 0
    crashes_by_process: list[int] = field(default_factory=list)
    starts: int = 0
    forced_stops: int = 0
    """Processes SIGTERM did not end within the minute (then killed)."""
    unclean_exits: list[tuple[int, int]] = field(default_factory=list)
    """(process, exit code) of every exit neither 0 nor by SIGKILL."""
    peak_rss_mib: float = 0.0
    taken_by_process: list[int] = field(default_factory=list)
    """Partitions (or with P = 1 command queues) each process took, by its log."""
    released_by_process: list[int] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    faults: list[str] = field(default_factory=list)
    redelivered_to_collector: int = 0
    node_faults: int = 0
    stream_rate: float = 0.0
    """Commands of the stream (not the setup) that got a first answer, a second, from the
    first to the last of those answers."""
    pauses: list[tuple[str, float]] = field(default_factory=list)
    """Per fault, the longest time no command got its first answer while the fault lasted."""
    outlasting: list[str] = field(default_factory=list)
    """Faults still under way when the stream's last command got its first answer: the stream
    did not flow through the whole of them (a stream paced too fast for its faults)."""
    answers: Mapping[str, Sequence[dict[str, Any]]] = field(default_factory=dict)
    """Every answer the run read, by message id, for a closer look."""
    events: Sequence[dict[str, Any]] = field(default_factory=list)
    """Every event the run read, in arrival order."""

    @property
    def lost(self) -> int:
        return len(self.findings.lost)

    def lines(self) -> list[str]:
        found, config = self.findings, self.config
        scaling = (
            f", {self.joins} joined, {self.leaves} left with SIGTERM"
            if config.processes > 1
            else ""
        )
        return [
            f"seed {config.seed}: {config.commands} commands through {config.processes} worker "
            f"process(es), P = {config.partitions}, "
            f"{'one order key' if config.mix.keyed else 'several order keys'} per target "
            f"({self.duplicated_ids} ids published 2-4 times), {self.messages} messages planned, "
            f"{self.published} published with confirms, {self.republished} again after a "
            "lost connection",
            f"faults injected: {self.kills} kill -9, {self.broker_restarts} broker "
            f"{config.broker}, {self.database_cuts} database cut(s) of "
            f"{config.database_seconds:g} s{scaling}: " + "; ".join(self.faults),
            f"lost {self.lost}, double-applied {found.double_applied}, out of order per key "
            f"{len(found.out_of_order)}, copies answered "
            f"differently {len(found.divergent)} (+{len(found.divergent_after_500)} with a 500), "
            "wrong answers "
            f"{len(found.wrong_answers)}, profiles off {len(found.profiles)}, relations off "
            f"{len(found.relations)}, events missing {len(found.missing_events)} / unexpected "
            f"{len(found.unexpected_events)} / published again alike {found.duplicate_events}",
            "wrong answers by expected -> given error: "
            + (", ".join(f"{a} -> {b}: {n}" for (a, b), n in sorted(found.codes.items())) or "-"),
            f"worker crashes {self.crashes} (by process: {self.crashes_by_process}), "
            f"{self.starts} starts, SIGTERM exits not 0: {self.unclean_exits or '-'}, "
            f"forced stops {self.forced_stops}, peak RSS {self.peak_rss_mib:.1f} MiB (highest "
            f"process), elapsed {self.elapsed_seconds:.1f} s",
            f"partitions taken by process {self.taken_by_process}, released (SIGTERM and "
            f"rebalancing) {self.released_by_process} (by the logs, at INFO or finer)",
            "longest pause per fault (no new answer): "
            + ("; ".join(f"{fault}: {pause:.1f} s" for fault, pause in self.pauses) or "-")
            + (
                f" (outlasting the stream: {', '.join(self.outlasting)})" if self.outlasting else ""
            ),
        ]


@dataclass
class Rig:
    """Everything a run drives: the workers, the proxies in front of the services, and the
    producer's and observer's sides."""

    chaos: Settings
    amqp: str
    workers: WorkerPool
    database: TcpProxy
    broker: TcpProxy | None
    collector: Collector
    publisher: Publisher


async def run_chaos(
    settings: Settings, config: ChaosConfig, log_dir: Path, say: Callable[[str], None] | None = None
) -> Report:
    """Run `config` against the services of `settings` (names unique to this run; the
    catalog applied to its database). Queues of the run are deleted at the end. `say` gets
    a line of progress every five seconds."""
    partitioned = {"partitions": config.partitions}
    chaos = settings.model_copy(update={**WORKER, **partitioned, **config.worker})
    started = time.monotonic()
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    database = await started_proxy(chaos.mongodb_url)
    broker = await started_proxy(chaos.amqp_url) if config.broker == "proxy" else None
    amqp = through(chaos.amqp_url, broker) if broker else chaos.amqp_url
    env = worker_environment(chaos, mongodb_url=through(chaos.mongodb_url, database))
    events_queue = f"chaos_events.{chaos.import_queue}"
    await declare_topology(amqp, chaos, events_queue)
    queues: dict[Queue, str] = {"imports": chaos.import_queue, "relations": chaos.relations_queue}
    rig = Rig(
        chaos,
        amqp,
        WorkerPool({**env, "PW_AMQP_URL": amqp}, log_dir, config.processes, config.seed),
        database,
        broker,
        Collector(amqp, [chaos.import_result_queue, chaos.relations_result_queue], events_queue),
        Publisher(amqp, queues),
    )
    stop = asyncio.Event()
    collecting = asyncio.create_task(rig.collector.run(stop))
    tracing = asyncio.create_task(_traced(rig, say)) if say else None
    report = Report(config, Findings())
    cluster = None
    if config.node_faults:
        cluster = Cluster(chaos.amqp_url, config.node_restart_after, config.isolation_seconds)
    try:
        await rig.workers.start()
        model, published, copies = await _stream(config, rig, report, cluster)
    finally:
        if tracing is not None:
            tracing.cancel()
        await rig.workers.stop()
        stop.set()
        await collecting
        await rig.publisher.close()
        for proxy in (database, broker):
            if proxy is not None:
                await proxy.cut()
        async with await connected(chaos.amqp_url, "chaos cleanup") as connection:
            await delete_topology(connection, chaos, also=[events_queue])
    report.findings = await _checked(chaos, model, published, copies, rig.collector)
    report.published, report.republished = rig.publisher.published, rig.publisher.republished
    workers = rig.workers
    report.kills, report.crashes = workers.kills, workers.crashes
    report.joins, report.leaves, report.starts = workers.joins, workers.leaves, workers.starts
    report.crashes_by_process, report.forced_stops = workers.crashes_by_process, workers.forced
    report.unclean_exits = workers.unclean_exits
    report.peak_rss_mib = workers.peak_rss_mib
    handoffs = workers.handoffs()
    report.taken_by_process = [logged["partition taken"] for logged in handoffs]
    report.released_by_process = [logged["partition released"] for logged in handoffs]
    report.redelivered_to_collector = rig.collector.redelivered_to_us
    report.answers, report.events = rig.collector.answers, rig.collector.events
    report.elapsed_seconds = time.monotonic() - started
    return report


async def _stream(
    config: ChaosConfig, rig: Rig, report: Report, cluster: Cluster | None
) -> tuple[Model, list[Message], dict[str, int]]:
    """The setup phase (no faults), then the stream with its faults, until all is answered."""
    collector = rig.collector
    seeds = setup(config.seed)
    await rig.publisher.publish(seeds)
    await _answered(collector, dict.fromkeys((m.message_id for m in seeds), 1), 60)
    first = len(collector.arrivals)
    directory = {str(collector.answers[m.message_id][0]["profile_id"]): _key(m) for m in seeds}
    ids = {email: profile_id for profile_id, (_, email) in directory.items()}
    plan = stream(config.seed, config.commands, ids, config.mix)
    model = Model(directory=directory).fold([*seeds, *plan.messages])
    report.messages = len(seeds) + len(plan.messages)
    report.duplicated_ids = sum(1 for n in plan.copies.values() if n > 1)
    total = len(plan.copies)
    joins, leaves = config.scale
    faults = Faults(
        FaultPlan.drawn(
            config.seed,
            config.kills,
            config.broker_restarts,
            config.database_cuts,
            joins,
            leaves,
            len(config.node_faults),
        ),
        rig.workers,
        lambda: (len(collector.answers) - len(seeds)) / total,
        database=rig.database,
        database_seconds=config.database_seconds,
        broker=config.broker,
        broker_proxy=rig.broker,
        seed=config.seed,
        restart_delay=config.restart_delay,
        cluster=cluster,
        node_faults=config.node_faults,
        leading=rig.chaos.import_queue,
    )
    faulting = asyncio.create_task(faults.run())
    deadline = time.monotonic() + config.timeout_seconds
    pace = functools.partial(_paced, rig.publisher, plan.messages, collector, len(seeds))
    await pace(config.ahead, faults.unpaced, deadline, config.rate)
    await _answered(collector, plan.copies, deadline - time.monotonic())
    try:
        await asyncio.wait_for(faulting, max(deadline - time.monotonic(), 1))
    except TimeoutError:
        faults.log.append("(the faults left were never reached)")
    await _settled(collector, rig.chaos, rig.amqp, deadline)
    report.faults, report.broker_restarts = faults.log, faults.broker_restarts
    report.database_cuts, report.node_faults = faults.database_cuts, faults.node_faults_struck
    report.pauses = longest_pauses(faults.windows, collector.arrivals, time.monotonic())
    streamed = collector.arrivals[first:]
    if len(streamed) > 1:
        report.stream_rate = (len(streamed) - 1) / (streamed[-1] - streamed[0])
        report.outlasting = [name for name, _, stop in faults.windows if stop > streamed[-1]]
    return model, [*seeds, *plan.messages], {m.message_id: 1 for m in seeds} | plan.copies


async def _traced(rig: Rig, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(5)
        say(
            f"{time.monotonic() - started:6.0f} s: {len(rig.collector.answers)} ids answered, "
            f"{rig.publisher.published} published ({rig.publisher.republished} again), "
            f"{len(rig.collector.events)} events, workers started {rig.workers.starts} times, "
            f"{len(rig.workers.live())} live"
        )


def _key(message: Message) -> tuple[int, str]:
    return int(message.body["db_id"]), str(message.body["email"])


async def _paced(
    publisher: Publisher,
    messages: list[Message],
    collector: Collector,
    answered_before: int,
    ahead: int,
    unpaced: asyncio.Event,
    deadline: float,
    rate: float | None = None,
) -> None:
    """Publish in order, in chunks of 10, keeping at most `ahead` distinct commands
    unanswered (and at most `rate` a second); while `unpaced` is set, a chunk every 50 ms
    whatever is answered, so that the broker going away (which takes a while to start) finds
    publications in flight."""
    published: set[str] = set()
    started = time.monotonic()
    for first in range(0, len(messages), 10):
        if rate is not None:
            await asyncio.sleep(max(0.0, started + first / rate - time.monotonic()))
        chunk = messages[first : first + 10]
        wanted = len(published) + answered_before - ahead
        go = functools.partial(_may_go, collector.answers, wanted, unpaced)
        if not await until(go, deadline):
            return
        if unpaced.is_set():
            await asyncio.sleep(0.05)
        await publisher.publish(chunk)
        published.update(m.message_id for m in chunk)


def longest_pauses(
    windows: Sequence[tuple[str, float, float]], arrivals: Sequence[float], end: float
) -> list[tuple[str, float]]:
    """Per fault window (name, start, stop), the longest gap between first answers that
    overlaps it (the gap running into it from the last answer before it included; with no
    answer after its start, until `end`)."""
    pauses = []
    for name, start, stop in windows:
        longest = 0.0
        after = [a for a in arrivals if a > start]
        before = [a for a in arrivals if a <= start]
        times = before[-1:] + after + ([] if after else [end])
        for earlier, later in itertools.pairwise(times):
            if earlier < stop:
                longest = max(longest, later - earlier)
        pauses.append((name, longest))
    return pauses


def _may_go(answers: Mapping[str, Any], count: int, unpaced: asyncio.Event) -> bool:
    return unpaced.is_set() or len(answers) >= count


async def _answered(collector: Collector, copies: Mapping[str, int], timeout: float) -> None:
    """Until every message id has at least as many answers as copies (or `timeout`)."""
    deadline = time.monotonic() + timeout
    waiting = list(copies)
    while waiting and time.monotonic() < deadline:
        waiting = [m for m in waiting if len(collector.answers.get(m, ())) < copies[m]]
        await asyncio.sleep(0.2)


async def _settled(collector: Collector, chaos: Settings, amqp: str, deadline: float) -> None:
    """Until nothing waits in the command queues (retries included) and nothing has arrived
    for two seconds: late copies are answered and late events are in."""
    names = [
        name
        for route in routes(chaos)[:2]
        for name in route.queue_names(chaos.retry_max_attempts)
        if not name.endswith(".dead")
    ]
    partitions = [partitions_of(chaos, route) for route in command_routes(chaos)]
    names += [name for p in partitions if p.routed for name in p.names]
    while time.monotonic() < deadline:
        if time.monotonic() - collector.last_seen > 2 and await queued(amqp, names) == 0:
            return
        await asyncio.sleep(0.5)


async def _checked(
    chaos: Settings,
    model: Model,
    published: Sequence[Message],
    copies: Mapping[str, int],
    collector: Collector,
) -> Findings:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(chaos.mongodb_url)
    try:
        db = client[chaos.mongodb_database]
        profiles = await db.profiles.find({}, {"db_id": 1, "fields": 1}).to_list()
        relations = await db.relations.find(LIVE).to_list()
    finally:
        await client.close()
    answers, events = collector.answers, collector.events
    return check(model, copies, answers, events, profiles, relations, published)
