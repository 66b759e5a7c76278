"""The worker's life: connect, declare, consume; reconnect with backoff; stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiormq
from aio_pika.exceptions import AMQPException

from worker.domain.imports.processor import ImportProcessor
from worker.domain.queries.processor import QueryProcessor
from worker.domain.relations.processor import RelationProcessor
from worker.errors import BrokerUnavailable, StoreUnavailable
from worker.runtime.connection import connect, refused_access
from worker.runtime.consumer import BatchConsumer, Processor
from worker.runtime.frames import install as install_lenient_frames
from worker.runtime.health import Health
from worker.runtime.publisher import Publisher
from worker.runtime.topology import Route, declare
from worker.runtime.waiting import sleep_unless
from worker.settings import Settings
from worker.store.mongo import MongoStore

log = logging.getLogger("worker.app")

BROKER_ERRORS = (
    AMQPException,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    BrokerUnavailable,
)


class Worker:
    """Runs the consumers of one process until `stopping` is set."""

    def __init__(self, settings: Settings, store: MongoStore, health: Health | None = None) -> None:
        install_lenient_frames()
        self._settings = settings
        self._store = store
        self.health = health or Health()
        self.ready = asyncio.Event()
        self._consumers: list[BatchConsumer] = []
        self._acked_before_shutdown = 0
        self._owner = uuid.uuid4().hex
        """This process in the command ledger, the same in every broker session."""

    def in_flight(self) -> dict[str, int]:
        """Messages delivered and not yet acked, by queue."""
        return {consumer.queue: consumer.in_flight for consumer in self._consumers}

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
                asyncio.create_task(self._sweep_ledger(ending)),
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
        return sum(consumer.acked for consumer in self._consumers)

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
        """One broker connection: declare, consume until stopping or the connection is lost."""
        settings = self._settings
        connection = await connect(settings.amqp_url, settings.connection_name)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        halt = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        routes = self._routes()
        self._consumers = []
        try:
            publish_channel = await connection.channel(publisher_confirms=True)
            await declare(publish_channel, settings)
            publisher = Publisher(await publish_channel.get_underlay_channel())
            for route, processor, max_wait_ms in routes:
                channel = await connection.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=settings.prefetch_count)
                consumer = BatchConsumer(
                    await channel.get_underlay_channel(),
                    route,
                    processor,
                    publisher,
                    self._store,
                    settings,
                    self.health,
                    max_wait_ms=max_wait_ms,
                )
                self._consumers.append(consumer)
                tasks.append(asyncio.create_task(consumer.run(halt)))
            self.health.consumers_expected = len(tasks)
            self.health.broker(True, consumers=len(tasks))
            self.ready.set()
            log.info("ready", extra={"queues": [route.queue for route, *_ in routes]})
            await _first_of((stopping, lost), tasks)  # stopping, connection lost, consumer ended
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

    def _routes(self) -> list[tuple[Route, Processor, int | None]]:
        """Each consumed queue, the processor of its commands, and its batching wait."""
        settings, stores = self._settings, self._store.ports()
        limit = settings.max_message_bytes
        return [
            (
                Route(settings.import_queue, settings.import_result_queue),
                ImportProcessor(stores, _now, limit, self._owner),
                None,
            ),
            (
                Route(settings.relations_queue, settings.relations_result_queue),
                RelationProcessor(stores, _now, limit, self._owner),
                None,
            ),
            (
                Route(settings.relations_query_queue, None),
                QueryProcessor(stores, limit),
                settings.query_batch_max_wait_ms,
            ),
        ]

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

    async def _sweep_ledger(self, ending: asyncio.Event) -> None:
        """Forget ledger entries older than the dedup window (FerretDB has no TTL indexes)."""
        window = timedelta(seconds=self._settings.dedup_window_seconds)
        while not ending.is_set():
            try:
                removed = await self._store.forget_before(datetime.now(UTC) - window)
                if removed:
                    log.info("command ledger swept", extra={"removed": removed})
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
