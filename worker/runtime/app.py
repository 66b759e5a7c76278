"""The worker's life: connect, declare, consume; reconnect with backoff; stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiormq
from aio_pika.exceptions import AMQPException
from aiormq.abc import AbstractChannel as RawChannel

from worker.domain.imports.processor import ImportProcessor
from worker.domain.order import CommandKind
from worker.domain.queries.processor import QueryProcessor
from worker.domain.relations.processor import RelationProcessor
from worker.errors import BrokerUnavailable, PartitionLost, StoreUnavailable
from worker.runtime.connection import connect, refused_access
from worker.runtime.consumer import BatchConsumer
from worker.runtime.frames import install as install_lenient_frames
from worker.runtime.health import Health
from worker.runtime.ownership import Family, Ownership, Runner
from worker.runtime.publisher import Publisher
from worker.runtime.router import RoutingStage
from worker.runtime.topology import Route, command_routes, declare, partitions_of, routes
from worker.runtime.waiting import sleep_unless
from worker.settings import Settings
from worker.store.fence import Fence
from worker.store.mongo import MongoStore

log = logging.getLogger("worker.app")

CommandProcessors = type[ImportProcessor] | type[RelationProcessor]

BROKER_ERRORS = (
    AMQPException,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    BrokerUnavailable,
    PartitionLost,
)


class Worker:
    """Runs the consumers of one process until `stopping` is set."""

    def __init__(self, settings: Settings, store: MongoStore, health: Health | None = None) -> None:
        install_lenient_frames()
        self._settings = settings
        self._store = store
        self.health = health or Health()
        self.ready = asyncio.Event()
        self._queries_consumer: BatchConsumer | None = None
        self._ownership: Ownership | None = None
        self._acked_before_shutdown = 0
        self._acked_in_ended_sessions = 0
        """Acked by the consumers of broker sessions that ended (each session has its own)."""

    def in_flight(self) -> dict[str, int]:
        """Messages delivered and not yet acked, by command (or query) queue."""
        in_flight = {route.queue: 0 for route in routes(self._settings)}
        for runner in self._runners():
            in_flight[runner.queue] += runner.in_flight
        return in_flight

    def _runners(self) -> list[Runner]:
        runners: list[Runner] = [self._queries_consumer] if self._queries_consumer else []
        return runners + (self._ownership.runners() if self._ownership else [])

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until `stopping`; a `ConfigurationError` ends it, transient failures do not.

        The background loops end on `ending` rather than by cancellation alone: a cancellation
        that lands inside a driver call can be swallowed there, and the loop would live on.
        """
        ending = asyncio.Event()
        background = [
            asyncio.create_task(self._heartbeat(ending)),
            asyncio.create_task(self._announce_shutdown(stopping, ending)),
        ]
        try:
            await self._store_ready(stopping)
            background += [
                asyncio.create_task(self._watch_store(ending)),
                asyncio.create_task(self._sweep_inbox(ending)),
            ]
            await self._consume(stopping)
        finally:
            ending.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self.health.broker(False)
        log.info(
            "shutdown finished",
            extra={
                "acked_while_draining": self._acked() - self._acked_before_shutdown,
                "left_for_redelivery": sum(self.in_flight().values()),
            },
        )

    def _acked(self) -> int:
        retired = self._ownership.retired_acked if self._ownership else 0
        current = retired + sum(runner.acked for runner in self._runners())
        return self._acked_in_ended_sessions + current

    async def _consume(self, stopping: asyncio.Event) -> None:
        """Broker sessions one after another, with backoff between them."""
        delay = 0.5
        while not stopping.is_set():
            try:
                await self._session(stopping)
                delay = 0.5
            except BROKER_ERRORS as exc:
                self.health.broker(False)
                self.ready.clear()
                if refusal := refused_access(exc, self._settings.amqp_url):
                    raise refusal from exc
                log.warning(
                    "broker unavailable; reconnecting",
                    extra={"error": str(exc) or repr(exc), "delay_seconds": delay},
                )
                await sleep_unless(stopping, delay)
                delay = min(delay * 2, self._settings.reconnect_max_delay_seconds)

    async def _store_ready(self, stopping: asyncio.Event) -> None:
        delay = 0.5
        while not stopping.is_set():
            try:
                await self._store.ensure_indexes()
                self.health.store(True)
                return
            except StoreUnavailable as exc:
                self.health.store(False)
                log.warning(
                    "database unavailable at start; retrying",
                    extra={"error": str(exc), "delay_seconds": delay},
                )
                await sleep_unless(stopping, delay)
                delay = min(delay * 2, self._settings.reconnect_max_delay_seconds)

    async def _session(self, stopping: asyncio.Event) -> None:
        """One broker connection: declare, consume until stopping or the connection is lost.

        Queries are consumed beside every other process; the partitions of the command
        queues (and their routing stages) are taken and handed over by `Ownership`."""
        settings = self._settings
        connection = await connect(
            settings.amqp_url, settings.connection_name, settings.broker_connect_timeout_seconds
        )
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        halt = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            publish_channel = await connection.channel(publisher_confirms=True)
            await declare(publish_channel, settings)
            publisher = Publisher(await publish_channel.get_underlay_channel())
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=settings.prefetch_count)
            self._acked_in_ended_sessions = self._acked()  # before this session's consumers
            self._queries_consumer, self._ownership = None, None
            queries = self._queries(await channel.get_underlay_channel(), publisher)
            self._ownership = Ownership(
                connection, self._families(publisher), self._store.fence, settings, self.health
            )
            tasks += [
                asyncio.create_task(queries.run(halt)),
                asyncio.create_task(self._ownership.run(halt)),
            ]
            self._queries_consumer = queries
            await _first_of((stopping, lost, self._ownership.settled), tasks)
            if self._ownership.settled.is_set():  # it has looked at every partition once
                self.health.consumers_expected = len(tasks)
                self.health.broker(True, consumers=len(tasks))
                self.ready.set()
                log.info("ready", extra={"partitions": self.health.partitions})
            await _first_of((stopping, lost), tasks)  # stopping, connection lost, a task ended
            self.health.broker(not lost.is_set(), consumers=0)
            halt.set()
            if lost.is_set():
                for task in tasks:
                    task.cancel()
            await self._finish(tasks)
            _raise_for(tasks, lost.is_set(), settings.amqp_url)
        finally:
            halt.set()
            for task in tasks:
                task.cancel()
            # Their failures were read above: awaiting one again must not raise past the retry.
            await asyncio.gather(*tasks, return_exceptions=True)
            if not connection.is_closed:
                await connection.close()

    def _queries(self, channel: RawChannel, publisher: Publisher) -> BatchConsumer:
        settings = self._settings
        route = Route(settings.relations_query_queue, None)
        processor = QueryProcessor(self._store.ports(), settings.max_message_bytes)
        return BatchConsumer(
            channel,
            route,
            processor,
            publisher,
            self._store,
            settings,
            self.health,
            max_wait_ms=settings.query_batch_max_wait_ms,
        )

    def _families(self, publisher: Publisher) -> list[Family]:
        """Each command queue's partitions, what consumes one (a processor whose writes carry
        the partition's epoch) and its routing stage."""
        settings = self._settings
        imports, relations = command_routes(settings)
        kinds: list[tuple[Route, CommandKind, CommandProcessors]] = [
            (imports, "imports", ImportProcessor),
            (relations, "relations", RelationProcessor),
        ]
        families = []
        for route, kind, processor in kinds:
            partitions = partitions_of(settings, route)
            router = functools.partial(
                RoutingStage,
                partitions=partitions,
                kind=kind,
                publisher=publisher,
                settings=settings,
            )
            consumer = functools.partial(self._partition_consumer, route, processor, publisher)
            families.append(Family(partitions, consumer, router if partitions.routed else None))
        return families

    def _partition_consumer(
        self,
        route: Route,
        processor: CommandProcessors,
        publisher: Publisher,
        channel: RawChannel,
        fence: Fence,
    ) -> BatchConsumer:
        settings, limit = self._settings, self._settings.max_message_bytes
        stores = self._store.ports(fence)
        return BatchConsumer(
            channel,
            route,
            processor(stores, _now, limit),
            publisher,
            self._store,
            settings,
            self.health,
        )

    async def _finish(self, tasks: list[asyncio.Task[None]]) -> None:
        """Let the batches in hand finish within the grace period, then cancel them."""
        running = [asyncio.shield(task) for task in tasks]
        try:
            await asyncio.wait_for(
                asyncio.gather(*running, return_exceptions=True),
                self._settings.shutdown_grace_seconds,
            )
        except TimeoutError:
            log.warning("shutdown grace period over; in-flight batches abandoned to redelivery")
            for task in tasks:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *BROKER_ERRORS):
                await task

    async def _announce_shutdown(self, stopping: asyncio.Event, ending: asyncio.Event) -> None:
        await _first_of((stopping, ending))
        if ending.is_set():
            return
        self._acked_before_shutdown = self._acked()
        log.info("shutdown begun", extra={"in_flight": self.in_flight()})

    async def _heartbeat(self, ending: asyncio.Event) -> None:
        """Tick once a second, so /healthz can tell a stalled event loop."""
        while not ending.is_set():
            self.health.tick()
            await sleep_unless(ending, 1.0)

    async def _watch_store(self, ending: asyncio.Event) -> None:
        """Ping the database between batches too, so readiness follows an idle outage."""
        while not ending.is_set():
            await sleep_unless(ending, self._settings.health_check_interval_seconds)
            try:
                await self._store.ping()
                self.health.store(True)
            except StoreUnavailable:
                self.health.store(False)

    async def _sweep_inbox(self, ending: asyncio.Event) -> None:
        """Forget inbox records and tombstones older than the dedup window. A sweep rather
        than TTL indexes: the window is a setting that changes without rebuilding an index,
        and what each sweep removed is logged."""
        window = timedelta(seconds=self._settings.dedup_window_seconds)
        while not ending.is_set():
            try:
                removed = await self._store.forget_before(datetime.now(UTC) - window)
                if removed:
                    log.info("inbox swept", extra={"removed": removed})
            except StoreUnavailable:
                pass
            await sleep_unless(ending, self._settings.dedup_cleanup_interval_seconds)


def _now() -> datetime:
    return datetime.now(UTC)


async def _first_of(
    events: Sequence[asyncio.Event], tasks: Sequence[asyncio.Task[None]] = ()
) -> None:
    """Wait until one of `events` is set or one of `tasks` ends."""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait({*waiters, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _raise_for(tasks: Sequence[asyncio.Task[None]], lost: bool, amqp_url: str) -> None:
    """How a session ended, from its consumers: refused access is a configuration error; a
    lost connection or a failed consumer, a reason to reconnect. A failure that is not the
    broker's is logged with its traceback (aiormq fails the futures of a channel closed
    without a reason with a bare `Exception`)."""
    failed = [task.exception() for task in tasks if not task.cancelled()]
    for exc in failed:
        if exc is not None and (refusal := refused_access(exc, amqp_url)):
            raise refusal from exc
    for exc in failed:
        if exc is not None and not isinstance(exc, BROKER_ERRORS):
            log.error("consumer failed; reconnecting", exc_info=exc)
    if lost or any(failed):
        raise BrokerUnavailable("connection closed")
