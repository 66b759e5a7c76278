"""Partition ownership on RabbitMQ: single-active-consumer queues against exclusive consumers.

Each partition queue must have exactly one active consumer across all worker processes, and
the broker must enforce it. Two mechanisms can:

- single-active-consumer (SAC): the queue is declared with `x-single-active-consumer: true`;
  every process consumes every partition, the broker delivers to the first registered
  consumer only and activates the next when that one's channel closes;
- exclusive consumers: `basic.consume(exclusive=True)` on a plain queue; a second process is
  refused (ACCESS_REFUSED, "in exclusive use") and consumes again once a poll (a passive
  `queue.declare`) shows the queue without a consumer.

The design chose exclusive consumers; this bench gives the README the measurements behind the
choice. For each mechanism and each handoff (graceful: the owner acks part of its prefetch,
then closes its channel; crash: the owner's socket is dropped with no AMQP close, as kill -9
leaves it) it measures the takeover latency, from the owner's close to the successor's first
delivery, and checks that the successor starts exactly at the first unacked message and that
owner and successor together consume the queue in publish order with no gap. It also shows
what a SAC standby is told when it becomes active (nothing until its first delivery), checks
that the broker refuses a second exclusive consumer on the queue type at all, and compares the
consume throughput of one SAC consumer with one exclusive consumer. `--queue-type quorum`
runs it all on quorum queues.

Owner and successor are two connections of this process: the broker sees two clients. Queues
are named per run, expire if a run dies, and are deleted at its end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiormq
import orjson
import uvloop
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.connection import TCPTransportFactory
from pamqp.commands import Basic
from yarl import URL

Mechanism = Literal["sac", "exclusive"]
Handoff = Literal["graceful", "crash"]
MECHANISMS: tuple[Mechanism, ...] = ("sac", "exclusive")
HANDOFFS: tuple[Handoff, ...] = ("graceful", "crash")

ACK_EVERY = 100
PUBLISH_WINDOW = 1_000
ROUND_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 5.0
QUEUE_EXPIRES_MS = 600_000
STANDBY_IDLE_SECONDS = 1.0
PERSISTENT = Basic.Properties(delivery_mode=2, content_type="application/json")
RUN_ID = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Config:
    url: str
    rounds: int
    messages: int
    prefetch: int
    poll_seconds: float
    queue_type: str
    throughput_messages: int
    throughput_runs: int
    seed: int


class KeptTransport(TCPTransportFactory):
    """Plain TCP that keeps its stream, so a crash can drop the socket with no AMQP close."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await super().create(url, **kwargs)
        self.writer = writer
        return reader, writer

    def drop(self) -> None:
        """What kill -9 leaves the broker: the socket closes and nothing else is sent."""
        if self.writer is not None:
            self.writer.transport.abort()


class DroppedOnPurpose(logging.Filter):
    """Mutes aiormq's error for a connection whose socket the bench dropped: a crashed owner's
    loss is the point of the round, and a successor's would show as a violation anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Cancelling cause reader exited abnormally"


class Receiver:
    """A consumer callback recording each delivery's sequence number and tag, and when the
    first and last arrived."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.tags: list[int] = []
        self.first_at: float | None = None
        self.last_at = 0.0
        self._grew = asyncio.Event()

    async def __call__(self, message: DeliveredMessage) -> None:
        self.last_at = time.perf_counter()
        if self.first_at is None:
            self.first_at = self.last_at
        self.seqs.append(int(orjson.loads(message.body)["seq"]))
        self.tags.append(message.delivery_tag or 0)
        self._grew.set()

    async def wait_for(self, count: int) -> None:
        while len(self.seqs) < count:
            self._grew.clear()
            await self._grew.wait()


class Broker:
    """The bench's own connection: declares the queues, fills them and deletes them."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel, config: Config):
        self.connection = connection
        self.channel = channel
        self.config = config
        self.queues: list[str] = []

    @classmethod
    async def open(cls, config: Config) -> Broker:
        connection = await aiormq.connect(config.url)
        return cls(connection, await connection.channel(publisher_confirms=True), config)

    async def queue(self, label: str, *, single_active: bool) -> str:
        name = f"bench.handoff.{RUN_ID}.{len(self.queues)}.{label}"
        arguments: dict[str, Any] = {
            "x-queue-type": self.config.queue_type,
            "x-expires": QUEUE_EXPIRES_MS,
        }
        if single_active:
            arguments["x-single-active-consumer"] = True
        await self.channel.queue_declare(name, durable=True, arguments=arguments)
        self.queues.append(name)
        return name

    async def publish(self, queue: str, count: int, start: int = 0) -> None:
        """Persistent messages numbered `start`, `start + 1`, ... in order, all confirmed.
        The channel's lock sends the publishes of one window in the order they are made."""
        for low in range(start, start + count, PUBLISH_WINDOW):
            high = min(low + PUBLISH_WINDOW, start + count)
            await asyncio.gather(
                *(
                    self.channel.basic_publish(
                        orjson.dumps({"seq": seq}), routing_key=queue, properties=PERSISTENT
                    )
                    for seq in range(low, high)
                )
            )

    async def delete(self, queue: str) -> None:
        await self.channel.queue_delete(queue)
        self.queues.remove(queue)

    async def close(self) -> None:
        """Delete what is left; a queue the broker lost the connection of expires by itself."""
        for queue in list(self.queues):
            with contextlib.suppress(aiormq.AMQPError, aiormq.ChannelInvalidStateError):
                await self.delete(queue)
        await close_quietly(self.connection)


@dataclass
class Outcome:
    """One handoff round: the takeover latency (None when it cannot be told) and what broke."""

    latency_ms: float | None
    violations: list[str] = field(default_factory=list)
    refusals: int = 0


async def connect(url: str) -> tuple[AbstractConnection, KeptTransport]:
    transport = KeptTransport()
    return await aiormq.connect(url, transport_factory=transport), transport


async def consumer_channel(connection: AbstractConnection, prefetch: int) -> AbstractChannel:
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=prefetch)
    return channel


async def close_quietly(connection: AbstractConnection) -> None:
    """Close a connection that may be closed already (a crashed owner's)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await connection.close()


async def consumers(channel: AbstractChannel, queue: str) -> int:
    """The queue's consumer count from a passive declare, as the broker counts: a classic
    SAC queue counts its standbys, a quorum one does not."""
    return (await channel.queue_declare(queue, passive=True)).consumer_count or 0


async def drain(channel: AbstractChannel, receiver: Receiver, total: int) -> None:
    """Take `total` deliveries, acking every ACK_EVERY of them (and the rest) with one ack."""
    acked = 0
    while acked < total:
        upto = min(acked + ACK_EVERY, total)
        await receiver.wait_for(upto)
        await channel.basic_ack(receiver.tags[upto - 1], multiple=True)
        acked = upto


async def take_when_free(
    connection: AbstractConnection,
    queue: str,
    receiver: Receiver,
    config: Config,
    tried: asyncio.Event,
) -> tuple[AbstractChannel, int]:
    """The exclusive successor: consume exclusively; while refused, poll the queue every
    `poll_seconds` with a passive declare and consume again once it shows no consumer. Sets
    `tried` after the first attempt; returns the consuming channel and the refusals."""
    refusals = 0
    try:
        channel = await consumer_channel(connection, config.prefetch)
        while True:
            try:
                await channel.basic_consume(queue, receiver, exclusive=True)
            except aiormq.ChannelAccessRefused:
                refusals += 1
            else:
                return channel, refusals
            tried.set()
            channel = await consumer_channel(connection, config.prefetch)
            while True:
                await asyncio.sleep(config.poll_seconds)
                if await consumers(channel, queue) == 0:
                    break
    finally:
        tried.set()  # also when it failed: the round then fails on its result


def violations(
    owner: Receiver, successor: Receiver, acked: int, total: int, early: int
) -> list[str]:
    """The successor must begin at the first unacked message, and what owner and successor
    consumed (the owner's acked, then all of the successor's) must be 0 .. total - 1."""
    found: list[str] = []
    if early:
        found.append(f"the successor got {early} deliveries while the owner held the queue")
    first = successor.seqs[0] if successor.seqs else None
    if first != acked:
        found.append(f"the successor began at {first}, the first unacked message is {acked}")
    consumed = owner.seqs[:acked] + successor.seqs
    if consumed != list(range(total)):
        at = next((i for i, seq in enumerate(consumed) if seq != i), min(len(consumed), total))
        missing = total - len(set(consumed) & set(range(total)))
        duplicated = len(consumed) - len(set(consumed))
        found.append(
            f"publish order broken at position {at}: {missing} missing, {duplicated} duplicated"
        )
    return found


@dataclass
class Round:
    """One handoff round's two sides, on connections of their own."""

    config: Config
    mechanism: Mechanism
    queue: str
    owner_connection: AbstractConnection
    owner_transport: KeptTransport
    successor_connection: AbstractConnection
    owner: Receiver = field(default_factory=Receiver)
    successor: Receiver = field(default_factory=Receiver)
    early: int = 0
    closed_at: float = 0.0
    refusals: int = 0

    async def own(self) -> AbstractChannel:
        """The owner consumes first and waits for its full prefetch."""
        channel = await consumer_channel(self.owner_connection, self.config.prefetch)
        exclusive = self.mechanism == "exclusive"
        await channel.basic_consume(self.queue, self.owner, exclusive=exclusive)
        await self.owner.wait_for(self.config.prefetch)
        return channel

    async def hand_off(self, handoff: Handoff, acked: int, jitter: float) -> None:
        """Owner and successor take their places, the owner acks `acked` messages, `jitter`
        seconds later it leaves, and the successor drains the queue."""
        owner = await self.own()
        taking: asyncio.Task[tuple[AbstractChannel, int]] | None = None
        try:
            if self.mechanism == "sac":
                successor = await consumer_channel(self.successor_connection, self.config.prefetch)
                await successor.basic_consume(self.queue, self.successor)
            else:
                tried = asyncio.Event()
                taking = asyncio.create_task(
                    take_when_free(
                        self.successor_connection, self.queue, self.successor, self.config, tried
                    )
                )
                await tried.wait()
            await owner.basic_ack(self.owner.tags[acked - 1], multiple=True)
            await owner.basic_qos(prefetch_count=self.config.prefetch)  # the ack is processed
            await asyncio.sleep(jitter)
            self.early = len(self.successor.seqs)
            self.closed_at = time.perf_counter()
            if handoff == "graceful":
                await owner.close()
            else:
                self.owner_transport.drop()
            if taking is not None:
                successor, self.refusals = await taking
            await drain(successor, self.successor, self.config.messages - acked)
        finally:
            if taking is not None:
                taking.cancel()

    def outcome(self, acked: int) -> Outcome:
        latency = None
        if self.successor.first_at is not None and not self.early:
            latency = (self.successor.first_at - self.closed_at) * 1_000
        found = violations(self.owner, self.successor, acked, self.config.messages, self.early)
        return Outcome(latency, found, self.refusals)


async def handoff_round(
    broker: Broker, mechanism: Mechanism, handoff: Handoff, acked: int, jitter: float
) -> Outcome:
    """Fill a fresh queue, let an owner take `prefetch` messages and a successor wait its
    turn, ack `acked` of them, hand off after `jitter` seconds and let the successor drain."""
    config = broker.config
    queue = await broker.queue(f"{mechanism}.{handoff}", single_active=mechanism == "sac")
    await broker.publish(queue, config.messages)
    owner_connection, owner_transport = await connect(config.url)
    successor_connection, _ = await connect(config.url)
    sides = Round(config, mechanism, queue, owner_connection, owner_transport, successor_connection)
    try:
        async with asyncio.timeout(ROUND_TIMEOUT_SECONDS + 4 * config.poll_seconds):
            await sides.hand_off(handoff, acked, jitter)
    except TimeoutError:
        got = len(sides.successor.seqs)
        return Outcome(None, [f"timed out, the successor had {got} deliveries"])
    finally:
        await close_quietly(successor_connection)
        await close_quietly(owner_connection)
        await broker.delete(queue)
    return sides.outcome(acked)


async def exclusive_enforced(broker: Broker) -> bool:
    """Whether the broker refuses a second exclusive consumer on a queue of this type."""
    queue = await broker.queue("enforced", single_active=False)
    connection, _ = await connect(broker.config.url)
    try:
        first = await connection.channel()
        await first.basic_consume(queue, Receiver(), exclusive=True)
        second = await connection.channel()
        try:
            await second.basic_consume(queue, Receiver(), exclusive=True)
        except aiormq.ChannelAccessRefused:
            return True
        return False
    finally:
        await close_quietly(connection)
        await broker.delete(queue)


@dataclass
class StandbyView:
    """What a SAC standby can observe about its own state, before and after it is activated."""

    consume_ok_fields: str
    count_standing_by: int
    count_active: int
    broker_status: str
    deliveries_while_active: int
    first_delivery_ms: float


async def broker_status(url: str, queue: str) -> str:
    """The broker's own view of the queue's consumers (`rabbitmqctl list_consumers`), which no
    consumer sees over AMQP; only for a broker on this machine."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or URL(url).host not in {"127.0.0.1", "localhost", "::1"}:
        return "not asked (no local rabbitmqctl)"
    process = await asyncio.create_subprocess_exec(
        ctl, "-q", "list_consumers", "queue_name", "activity_status",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return "rabbitmqctl timed out"
    rows = [line.split("\t") for line in output.decode().splitlines()]
    return ", ".join(row[1] for row in rows if len(row) == 2 and row[0] == queue) or "none"


async def standby_view(broker: Broker) -> StandbyView:
    """An owner and a standby on an empty SAC queue; the owner leaves; the standby is active
    but, the queue being empty, gets nothing until a message is published."""
    config = broker.config
    queue = await broker.queue("standby", single_active=True)
    owner_connection, _ = await connect(config.url)
    standby_connection, _ = await connect(config.url)
    standby = Receiver()
    try:
        owner = await consumer_channel(owner_connection, config.prefetch)
        await owner.basic_consume(queue, Receiver())
        channel = await consumer_channel(standby_connection, config.prefetch)
        consume_ok = await channel.basic_consume(queue, standby)
        fields = ", ".join(consume_ok.__slots__)
        standing_by = await consumers(channel, queue)
        await owner.close()
        await asyncio.sleep(STANDBY_IDLE_SECONDS)
        active = await consumers(channel, queue)
        status = await broker_status(config.url, queue)
        idle = len(standby.seqs)
        published_at = time.perf_counter()
        await broker.publish(queue, 1)
        async with asyncio.timeout(ROUND_TIMEOUT_SECONDS):
            await drain(channel, standby, idle + 1)
        first_ms = ((standby.first_at or published_at) - published_at) * 1_000
        return StandbyView(fields, standing_by, active, status, idle, first_ms)
    finally:
        await close_quietly(standby_connection)
        await close_quietly(owner_connection)
        await broker.delete(queue)


async def throughput(broker: Broker, mechanism: Mechanism) -> float:
    """Messages per second one consumer takes from a full queue: on a SAC queue, or as an
    exclusive consumer on a plain one; same prefetch, an ack every ACK_EVERY."""
    config = broker.config
    queue = await broker.queue(f"rate.{mechanism}", single_active=mechanism == "sac")
    await broker.publish(queue, config.throughput_messages)
    connection, _ = await connect(config.url)
    receiver = Receiver()
    try:
        channel = await consumer_channel(connection, config.prefetch)
        started = time.perf_counter()
        await channel.basic_consume(queue, receiver, exclusive=mechanism == "exclusive")
        async with asyncio.timeout(ROUND_TIMEOUT_SECONDS * 5):
            await drain(channel, receiver, config.throughput_messages)
        return config.throughput_messages / (receiver.last_at - started)
    finally:
        await close_quietly(connection)
        await broker.delete(queue)


@dataclass
class Report:
    config: Config
    enforced: bool
    outcomes: dict[tuple[Mechanism, Handoff], list[Outcome]]
    standby: StandbyView
    rates: dict[Mechanism, list[float]]


async def main(config: Config) -> Report:
    rng = random.Random(config.seed)
    broker = await Broker.open(config)
    try:
        enforced = await exclusive_enforced(broker)
        outcomes: dict[tuple[Mechanism, Handoff], list[Outcome]] = {}
        for mechanism in MECHANISMS:
            for handoff in HANDOFFS:
                outcomes[mechanism, handoff] = [
                    await handoff_round(
                        broker,
                        mechanism,
                        handoff,
                        acked=rng.randint(1, config.prefetch - 1),
                        jitter=rng.uniform(0, config.poll_seconds),
                    )
                    for _ in range(config.rounds)
                ]
        standby = await standby_view(broker)
        rates: dict[Mechanism, list[float]] = {mechanism: [] for mechanism in MECHANISMS}
        for run in range(config.throughput_runs):
            for mechanism in MECHANISMS[run % 2 :] + MECHANISMS[: run % 2]:
                rates[mechanism].append(await throughput(broker, mechanism))
        return Report(config, enforced, outcomes, standby, rates)
    finally:
        await broker.close()


def latency_cell(outcomes: list[Outcome]) -> str:
    measured = sorted(o.latency_ms for o in outcomes if o.latency_ms is not None)
    if not measured:
        return "n/a"
    return f"{measured[0]:.1f} / {statistics.median(measured):.1f} / {measured[-1]:.1f}"


def show(report: Report) -> None:
    config = report.config
    print(
        f"handoff on {config.queue_type} queues: {config.rounds} rounds per line, "
        f"{config.messages} messages, prefetch {config.prefetch}, the owner acks 1 to "
        f"{config.prefetch - 1} of its prefetch; the exclusive successor polls every "
        f"{config.poll_seconds:g} s"
    )
    print(f"{'mechanism':<10} {'handoff':<9} {'latency ms min / median / max':<31} "
          f"{'rounds with violations':<23} refused consumes")  # fmt: skip
    details: list[str] = []
    for (mechanism, handoff), outcomes in report.outcomes.items():
        broken = [o for o in outcomes if o.violations]
        refused = str(sum(o.refusals for o in outcomes)) if mechanism == "exclusive" else "-"
        print(f"{mechanism:<10} {handoff:<9} {latency_cell(outcomes):<31} "
              f"{f'{len(broken)} / {len(outcomes)}':<23} {refused}")  # fmt: skip
        details += [f"  {mechanism} {handoff}: {v}" for o in broken for v in o.violations]
    if details:
        print(*details[:10], sep="\n")
    enforced = "yes (ACCESS_REFUSED)" if report.enforced else "NO: the broker let it consume"
    print(f"a second exclusive consumer on a {config.queue_type} queue refused: {enforced}")
    view = report.standby
    print(
        f"SAC standby: its basic.consume-ok is the active one's (fields: "
        f"{view.consume_ok_fields}); consumer_count {view.count_standing_by} standing by, "
        f"{view.count_active} once active; broker: "
        f"{view.broker_status}; deliveries in {STANDBY_IDLE_SECONDS:g} s active on an empty "
        f"queue: {view.deliveries_while_active}.\n  Nothing tells it it became active except the "
        f"first delivery, here {view.first_delivery_ms:.1f} ms after a publish"
    )
    cells = [
        f"{label} {statistics.median(rates):,.0f} msg/s ({min(rates):,.0f} to {max(rates):,.0f})"
        for label, rates in (
            ("SAC queue", report.rates["sac"]),
            ("exclusive consumer, plain queue", report.rates["exclusive"]),
        )
    ]
    print(
        f"consume throughput, one consumer, {config.throughput_messages} messages, prefetch "
        f"{config.prefetch}, an ack every {ACK_EVERY}, median of {config.throughput_runs} "
        "(min to max): " + "; ".join(cells)
    )
    ratios = [
        sac / exclusive
        for sac, exclusive in zip(report.rates["sac"], report.rates["exclusive"], strict=True)
    ]
    print(
        f"  SAC / exclusive, each pair run back to back: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f} to {max(ratios):.2f})"
    )


def arguments(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.handoff",
        description="Takeover latency, ordering and throughput of single-active-consumer "
        "queues against exclusive consumers.",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--queue-type", choices=("classic", "quorum"), default="classic")
    parser.add_argument("--throughput-messages", type=int, default=20_000)
    parser.add_argument("--throughput-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parsed = parser.parse_args(argv)
    if not 2 <= parsed.prefetch < parsed.messages:
        parser.error("--prefetch must be at least 2 and below --messages")
    if min(parsed.rounds, parsed.throughput_messages, parsed.throughput_runs) < 1 or (
        parsed.poll_seconds <= 0
    ):
        parser.error("--rounds, --poll-seconds and the throughput options must be positive")
    return Config(
        url=parsed.amqp_url,
        rounds=parsed.rounds,
        messages=parsed.messages,
        prefetch=parsed.prefetch,
        poll_seconds=parsed.poll_seconds,
        queue_type=parsed.queue_type,
        throughput_messages=parsed.throughput_messages,
        throughput_runs=parsed.throughput_runs,
        seed=parsed.seed,
    )


if __name__ == "__main__":
    logging.getLogger("aiormq.connection").addFilter(DroppedOnPurpose())
    show(uvloop.run(main(arguments())))
