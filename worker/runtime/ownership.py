"""Which partitions this process consumes: free ones taken, extras handed over, every one
released in order (SPEC §9).

Each partition, and each routing stage, is a queue consumed by one exclusive consumer on a
channel of its own: the broker refuses a second one, so one process at a time owns it, and
this process knows which it owns. Each poll it counts the live processes W (the consumers of
`Q.members`) and looks at every partition; with floor = P // W and ceil = ⌈P / W⌉ it releases
what it holds beyond ceil (or one beyond floor while another process holds fewer than floor:
the consumers of `Q.hungry`), and takes free partitions up to ceil (only a hungry process
takes while one is hungry). Two processes taking one free partition at once is harmless: the
broker refuses the second exclusive consumer.

A partition is released by finishing the batch in hand and closing its channel, never by
cancelling its consumer first: on channel close the broker puts the unacked deliveries back at
their places before it drops the consumer, so the next owner starts exactly where this one
stopped, and one key's commands are never applied out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.abc import AbstractChannel as RawChannel

from worker.errors import StoreUnavailable
from worker.observability import (
    PARTITION_BACKLOG,
    PARTITION_HANDOFFS,
    PARTITIONS_OWNED,
    REBALANCE_SECONDS,
    ROUTING_BACKLOG,
)
from worker.runtime.health import Health
from worker.runtime.partitions import Partitions
from worker.runtime.subscription import Subscription, subscribe
from worker.runtime.waiting import sleep_unless
from worker.settings import Settings
from worker.store.fence import Fence

log = logging.getLogger("worker.ownership")


@dataclass(frozen=True)
class View:
    """What one poll saw of a command queue's partitions, from this process."""

    partitions: int
    members: int
    held: frozenset[int]
    free: frozenset[int]
    hungry_others: int
    """Other processes holding fewer than their floor."""

    @property
    def floor(self) -> int:
        return self.partitions // self.members

    @property
    def ceil(self) -> int:
        return -(-self.partitions // self.members)


@dataclass(frozen=True)
class Moves:
    take: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    hungry: bool = False
    """Whether this process holds fewer than its floor after the moves."""
    balanced: bool = False


def moves(view: View, preference: Sequence[int]) -> Moves:
    """What to take and release so that every process ends within one of P / W.

    `preference` orders the partitions for this process (a permutation of its own), so that
    processes taking free partitions at one moment mostly reach for different ones."""
    held = [index for index in preference if index in view.held]
    if len(held) > view.ceil:
        release = held[view.ceil :]
    elif view.hungry_others and len(held) > view.floor:
        release = held[-1:]
    else:
        release = []
    kept = len(held) - len(release)
    take: list[int] = []
    if not release and (kept < view.floor or not view.hungry_others):
        take = [index for index in preference if index in view.free][: view.ceil - kept]
    hungry = kept + len(take) < view.floor
    balanced = view.floor <= len(held) <= view.ceil and not view.free and not view.hungry_others
    return Moves(tuple(take), tuple(release), hungry, balanced)


def preference_of(owner: str, partitions: int) -> list[int]:
    """This process's order of the partitions: a permutation seeded by its name."""
    order = list(range(partitions))
    random.Random(owner).shuffle(order)
    return order


@dataclass(frozen=True)
class Seen:
    """A queue as a passive declare shows it: messages ready, consumers."""

    message_count: int
    consumer_count: int


class Runner(Protocol):
    """What runs on an owned queue: a partition's batch consumer, or a routing stage."""

    @property
    def queue(self) -> str:
        """The command queue it serves."""
        ...

    @property
    def acked(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    async def run(self, halt: asyncio.Event, subscription: Subscription) -> None: ...


@dataclass(frozen=True)
class Family:
    """A command queue's partitions, what consumes one (its writes carrying the epoch this
    process took it at), and (with P > 1) its routing stage."""

    partitions: Partitions
    consumer: Callable[[RawChannel, Fence], Runner]
    router: Callable[[RawChannel], Runner] | None = None


Fences = Callable[[str], Awaitable[Fence]]
"""The next epoch of a partition, drawn by the process that has just taken it."""


@dataclass
class Seat:
    """One queue this process consumes exclusively, and the runner on it."""

    queue: str
    channel: AbstractChannel
    subscription: Subscription
    runner: Runner
    halt: asyncio.Event
    task: asyncio.Task[None]
    standing_by: int = 0
    """Polls in a row at which it looked like another process's standby (see
    `_release_contested`)."""

    @property
    def gone(self) -> bool:
        """The runner ended, or the broker closed the channel under it (it would wait for
        deliveries forever)."""
        return self.task.done() or self.channel.is_closed


@dataclass
class _Held:
    """What this process holds of one family."""

    partitions: dict[int, Seat] = field(default_factory=dict)
    router: Seat | None = None
    hungry_tag: str | None = None
    members: int = 0
    changed_at: float | None = None


class Ownership:
    """Takes, balances and releases this process's partitions for one broker session."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        families: Sequence[Family],
        fences: Fences,
        settings: Settings,
        health: Health,
    ) -> None:
        self._connection = connection
        self._families = families
        self._fences = fences
        self._settings = settings
        self._health = health
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._held = {family.partitions.queue: _Held() for family in families}
        self._poll: RawChannel | None = None
        self.settled = asyncio.Event()
        """Set after the first look at every partition (and the partitions taken then)."""
        self.retired_acked = 0

    def runners(self) -> list[Runner]:
        return [seat.runner for seat in self._seats()]

    async def run(self, halt: asyncio.Event) -> None:
        """Balance every poll until `halt`, then release everything in order."""
        channel = await self._connection.channel(publisher_confirms=False)
        self._poll = await channel.get_underlay_channel()
        try:
            for family in self._families:
                await self._poll.basic_consume(family.partitions.members, _ignore, no_ack=True)
            while True:
                for family in self._families:
                    await self._balance(family)
                self.settled.set()
                poll = self._settings.partition_poll_seconds
                await sleep_unless(halt, poll * random.uniform(0.75, 1.25))
                if halt.is_set():
                    break
            # every seat at once, kept where it is: its runner still counts (in_flight, acked)
            await asyncio.gather(*(self._release(seat, kept=True) for seat in self._seats()))
        finally:
            for seat in self._seats():
                seat.task.cancel()
            await asyncio.gather(*(s.task for s in self._seats()), return_exceptions=True)
            self._report()

    def _seats(self) -> list[Seat]:
        seats = []
        for held in self._held.values():
            seats += [*held.partitions.values(), *([held.router] if held.router else [])]
        return seats

    async def _balance(self, family: Family) -> None:
        partitions, held = family.partitions, self._held[family.partitions.queue]
        self._reap(held)
        assert self._poll is not None
        members = max(1, (await self._declared(partitions.members)).consumer_count)
        hungry = (await self._declared(partitions.hungry)).consumer_count
        seen = [await self._declared(name) for name in partitions.names]
        await self._release_contested(held, seen, -(-partitions.count // members))
        free = {i for i, ok in enumerate(seen) if ok.consumer_count == 0} - set(held.partitions)
        view = View(
            partitions.count,
            members,
            frozenset(held.partitions),
            frozenset(free),
            hungry - (1 if held.hungry_tag else 0),
        )
        planned = moves(view, preference_of(self._owner, partitions.count))
        await asyncio.gather(*(self._release(held.partitions.pop(i)) for i in planned.release))
        for index in planned.take:
            seat = await self._take(partitions.name(index), self._fenced(family))
            if seat is not None:
                held.partitions[index] = seat
        await self._signal_hunger(held, partitions, planned.hungry)
        if family.router is not None:
            await self._route(family, held)
        self._timed(held, partitions.queue, members, planned.balanced)
        PARTITION_BACKLOG.labels(partitions.queue).set(sum(ok.message_count for ok in seen))
        self._report()

    def _reap(self, held: _Held) -> None:
        """Forget seats that are gone. A runner that failed ends the session with its
        failure, as a consumer's failure does; a channel the broker closed (its queue deleted,
        say) is only dropped: the partition is taken again when it is free."""
        for index, seat in list(held.partitions.items()):
            if seat.gone:
                del held.partitions[index]
                self.retired_acked += seat.runner.acked
                _ended(seat)
        if held.router is not None and held.router.gone:
            router, held.router = held.router, None
            self.retired_acked += router.runner.acked
            _ended(router)

    async def _release_contested(self, held: _Held, seen: Sequence[Seen], ceil: int) -> None:
        """Quorum queues accept a second exclusive consumer and keep it waiting, uncounted,
        behind the active one (the single-active argument), so two processes taking one free
        partition at once may both believe they hold it. A held partition that never sent
        this process a delivery while it has another consumer or ready commands, or while
        this process is at its ceiling with a partition left free, at two polls in a row, is
        let go (a real owner that lets go hands over in order, as always)."""
        free = any(ok.consumer_count == 0 for i, ok in enumerate(seen) if i not in held.partitions)
        crowded = free and len(held.partitions) >= ceil
        for index, seat in list(held.partitions.items()):
            waiting, never_sent = seen[index], seat.subscription.received == 0
            suspect = waiting.consumer_count > 1 or waiting.message_count > 0 or crowded
            seat.standing_by = seat.standing_by + 1 if never_sent and suspect else 0
            if seat.standing_by >= 2:
                await self._release(held.partitions.pop(index))

    async def _route(self, family: Family, held: _Held) -> None:
        """Take the routing stage of the family's command queue when nobody has it."""
        assert family.router is not None
        queue = family.partitions.queue
        waiting = await self._declared(queue)
        ROUTING_BACKLOG.labels(queue).set(waiting.message_count if held.router else 0)
        if held.router is None and waiting.consumer_count == 0:
            router = family.router
            held.router = await self._take(queue, lambda _, channel: _ready(router(channel)))

    def _fenced(self, family: Family) -> Callable[[str, RawChannel], Awaitable[Runner]]:
        async def consumer(queue: str, channel: RawChannel) -> Runner:
            return family.consumer(channel, await self._fences(queue))

        return consumer

    async def _signal_hunger(self, held: _Held, partitions: Partitions, hungry: bool) -> None:
        assert self._poll is not None
        if hungry and held.hungry_tag is None:
            ok = await self._poll.basic_consume(partitions.hungry, _ignore, no_ack=True)
            held.hungry_tag = ok.consumer_tag
        elif not hungry and held.hungry_tag is not None:
            await self._poll.basic_cancel(held.hungry_tag)
            held.hungry_tag = None

    async def _declared(self, queue: str) -> Seen:
        assert self._poll is not None
        ok = await self._poll.queue_declare(queue, passive=True)
        return Seen(ok.message_count or 0, ok.consumer_count or 0)

    async def _take(
        self, queue: str, make: Callable[[str, RawChannel], Awaitable[Runner]]
    ) -> Seat | None:
        """Consume `queue` exclusively; None when another process was quicker, or when the
        database cannot give its epoch now (it is taken again at a later poll)."""
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._settings.prefetch_count)
        raw = await channel.get_underlay_channel()
        try:
            tag = f"{self._owner}:{queue}"
            subscription = await subscribe(raw, queue, exclusive=True, consumer_tag=tag)
        except aiormq.exceptions.ChannelAccessRefused as exc:
            if "exclusive" not in str(exc):
                raise
            await _closed(channel)
            return None
        try:
            runner = await make(queue, raw)
        except StoreUnavailable as exc:
            log.warning("partition left: no epoch", extra={"queue": queue, "error": str(exc)})
            await _closed(channel)
            return None
        halt = asyncio.Event()
        task = asyncio.create_task(runner.run(halt, subscription))
        PARTITION_HANDOFFS.labels(_family_of(queue, self._held), "taken").inc()
        log.info("partition taken", extra={"queue": queue})
        return Seat(queue, channel, subscription, runner, halt, task)

    async def _release(self, seat: Seat, kept: bool = False) -> None:
        """Finish the batch in hand, then close the channel: its unacked deliveries go back to
        the queue, in order, before another process can consume it. A seat not `kept` among
        the held ones has its acks counted as retired."""
        seat.halt.set()
        try:
            await asyncio.shield(seat.task)
        except Exception:
            log.warning("partition runner failed while released", exc_info=True)
        finally:
            await _closed(seat.channel)
        if not kept:
            self.retired_acked += seat.runner.acked
        PARTITION_HANDOFFS.labels(_family_of(seat.queue, self._held), "released").inc()
        log.info("partition released", extra={"queue": seat.queue})

    def _timed(self, held: _Held, queue: str, members: int, balanced: bool) -> None:
        """Observe how long this process took to settle after the membership changed."""
        now = time.monotonic()
        if members != held.members:
            held.members, held.changed_at = members, now
        elif balanced and held.changed_at is not None:
            REBALANCE_SECONDS.labels(queue).observe(now - held.changed_at)
            held.changed_at = None

    def _report(self) -> None:
        partitions = {queue: sorted(held.partitions) for queue, held in self._held.items()}
        for queue, indices in partitions.items():
            PARTITIONS_OWNED.labels(queue).set(len(indices))
        self._health.partitions = partitions
        self._health.routing = sorted(q for q, held in self._held.items() if held.router)


def _ended(seat: Seat) -> None:
    """Read a gone seat's end: its failure, if it failed; a closed channel is logged."""
    if not seat.task.done():
        seat.task.cancel()
        log.warning("partition channel closed by the broker", extra={"queue": seat.queue})
        return
    seat.task.result()


def _family_of(queue: str, held: dict[str, _Held]) -> str:
    """The command queue a consumed queue belongs to (metrics are labelled by it)."""
    return next((q for q in held if queue == q or queue.startswith(f"{q}.")), queue)


async def _ready(runner: Runner) -> Runner:
    return runner


async def _ignore(message: object) -> None:
    """`members` and `hungry` never hold messages; they are consumed to be counted."""


async def _closed(channel: AbstractChannel) -> None:
    with contextlib.suppress(Exception):
        await channel.close()
