"""The worker's life: connect, declare, consume; reconnect with backoff; stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import AMQPException

from worker.domain.imports.processor import ImportProcessor
from worker.domain.queries.processor import QueryProcessor
from worker.domain.relations.processor import RelationProcessor
from worker.errors import BrokerUnavailable, StoreUnavailable
from worker.observability import BROKER_UP
from worker.runtime.consumer import BatchConsumer, Processor
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

    def __init__(self, settings: Settings, store: MongoStore) -> None:
        self._settings = settings
        self._store = store
        self.ready = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        await self._store_ready(stopping)
        sweeper = asyncio.create_task(self._sweep_ledger(stopping))
        delay = 0.5
        try:
            while not stopping.is_set():
                try:
                    await self._session(stopping)
                    delay = 0.5
                except BROKER_ERRORS as exc:
                    BROKER_UP.set(0)
                    self.ready.clear()
                    log.warning(
                        "broker connection lost; reconnecting",
                        extra={"error": repr(exc), "delay_seconds": delay},
                    )
                    await sleep_unless(stopping, delay)
                    delay = min(delay * 2, self._settings.reconnect_max_delay_seconds)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _store_ready(self, stopping: asyncio.Event) -> None:
        delay = 0.5
        while not stopping.is_set():
            try:
                await self._store.ensure_indexes()
                return
            except StoreUnavailable as exc:
                log.warning("database unavailable at start", extra={"error": str(exc)})
                await sleep_unless(stopping, delay)
                delay = min(delay * 2, self._settings.reconnect_max_delay_seconds)

    async def _session(self, stopping: asyncio.Event) -> None:
        """One broker connection: declare, consume until stopping or the connection is lost."""
        settings = self._settings
        connection: AbstractRobustConnection = await aio_pika.connect(  # type: ignore[assignment]
            settings.amqp_url,
            client_properties={"connection_name": settings.connection_name},
        )
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        halt = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        routes = self._routes()
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
                    max_wait_ms=max_wait_ms,
                )
                tasks.append(asyncio.create_task(consumer.run(halt)))
            BROKER_UP.set(1)
            self.ready.set()
            log.info("consuming", extra={"queues": [route.queue for route, *_ in routes]})
            await _first_of(stopping, lost, tasks)
            halt.set()
            if lost.is_set():
                for task in tasks:
                    task.cancel()
            await self._finish(tasks)
            failed = [task for task in tasks if not task.cancelled() and task.exception()]
            if lost.is_set() or failed:
                raise BrokerUnavailable("connection closed")
        finally:
            halt.set()
            for task in tasks:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *BROKER_ERRORS):
                    await task
            if not connection.is_closed:
                await connection.close()

    def _routes(self) -> list[tuple[Route, Processor, int | None]]:
        """Each consumed queue, the processor of its commands, and its batching wait."""
        settings, stores = self._settings, self._store.ports()
        limit = settings.max_message_bytes
        return [
            (
                Route(settings.import_queue, settings.import_result_queue),
                ImportProcessor(stores, _now, limit),
                None,
            ),
            (
                Route(settings.relations_queue, settings.relations_result_queue),
                RelationProcessor(stores, _now, limit),
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

    async def _sweep_ledger(self, stopping: asyncio.Event) -> None:
        """Forget ledger entries older than the dedup window (FerretDB has no TTL indexes)."""
        window = timedelta(seconds=self._settings.dedup_window_seconds)
        while not stopping.is_set():
            try:
                removed = await self._store.forget_before(datetime.now(UTC) - window)
                if removed:
                    log.info("command ledger swept", extra={"removed": removed})
            except StoreUnavailable:
                pass
            await sleep_unless(stopping, self._settings.dedup_cleanup_interval_seconds)


def _now() -> datetime:
    return datetime.now(UTC)


async def _first_of(
    stopping: asyncio.Event, lost: asyncio.Event, tasks: list[asyncio.Task[None]]
) -> None:
    """Wait until stopping, the connection is lost, or a consumer ends."""
    waiters = {asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(lost.wait())}
    await asyncio.wait({*waiters, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
