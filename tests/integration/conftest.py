"""Fixtures that run the real worker against real services, with names unique per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from tests.integration.services import ServiceUrls
from worker.domain.shared.catalog import CatalogFile
from worker.errors import BrokerUnavailable, ConfigurationError
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.runtime.connection import connect
from worker.runtime.topology import declare, topology_names
from worker.settings import Settings
from worker.store.mongo import MongoStore

pytestmark = pytest.mark.integration

TOKEN = "test-write-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"
OTHER_TOKEN = "test-other-account-token-0123"
SMALL_TOKEN = "test-small-account-token-0123"
PARTNERS_TOKEN = "test-partners-only-token-0123"
CATALOG = CatalogFile.model_validate(
    {
        "accounts": [
            {"account_id": 1, "name": "Acme", "max_message_bytes": 8_192},
            {"account_id": 2, "name": "Other"},
            {"account_id": 3, "name": "Small", "max_profiles": 2},
        ],
        "databases": [
            {
                "db_id": 10,
                "account_id": 1,
                "name": "customers",
                "fields": [
                    {"name": "loyalty_id", "type": "string", "unique": True},
                    {"name": "city", "type": "string"},
                    {"name": "age", "type": "int"},
                    {"name": "score", "type": "float"},
                    {"name": "vip", "type": "bool"},
                    {"name": "interests", "type": "tags"},
                    {"name": "tier", "type": "enum", "values": ["bronze", "silver", "gold"]},
                    {"name": "address", "type": "object"},
                ],
            },
            {"db_id": 11, "account_id": 1, "name": "partners"},
            {"db_id": 20, "account_id": 2, "name": "theirs"},
            {"db_id": 30, "account_id": 3, "name": "small"},
        ],
        "resources": [
            {"resource_id": 100, "account_id": 1, "name": "news", "channels": ["email"]},
            {"resource_id": 101, "account_id": 1, "name": "sms", "channels": ["sms"]},
            {"resource_id": 102, "account_id": 1, "name": "app", "channels": ["push"]},
            {"resource_id": 103, "account_id": 1, "name": "offers", "channels": ["email", "sms"]},
            {"resource_id": 200, "account_id": 2, "name": "theirs", "channels": ["email"]},
        ],
        "relation_types": [
            {
                "rel_id": 500,
                "account_id": 1,
                "name": "customer of partner",
                "db_a": 10,
                "db_b": 11,
                "properties": [
                    {"name": "weight", "type": "number"},
                    {"name": "visits", "type": "number"},
                    {"name": "active", "type": "bool"},
                ],
            },
            {
                "rel_id": 501,
                "account_id": 1,
                "name": "family",
                "db_a": 10,
                "db_b": 10,
                "properties": [{"name": "closeness", "type": "number"}],
            },
            {"rel_id": 600, "account_id": 2, "name": "theirs", "db_a": 20, "db_b": 20},
        ],
        "tokens": [
            {"name": "w", "account_id": 1, "token": TOKEN},
            {"name": "r", "account_id": 1, "token": READ_TOKEN, "scopes": ["read"]},
            {"name": "o", "account_id": 2, "token": OTHER_TOKEN},
            {"name": "s", "account_id": 3, "token": SMALL_TOKEN},
            {"name": "p", "account_id": 1, "token": PARTNERS_TOKEN, "db_ids": [11]},
        ],
        "broker_users": [{"user": "guest", "account_id": 1}],
    }
)


@pytest.fixture
async def settings(services: ServiceUrls) -> AsyncIterator[Settings]:
    """The test's own names; its queues, exchanges and database are removed after it, whoever
    made them (the test, an in-process worker or a `profile-worker` process)."""
    settings = isolated_settings(
        services.amqp_url,
        services.mongodb_url,
        "test",
        batch_max_wait_ms=5,
        retry_max_attempts=2,
        retry_base_delay_ms=50,
        catalog_cache_seconds=0,
        shutdown_grace_seconds=10,
    )
    yield settings
    await removed(settings)


def isolated_settings(amqp_url: str, mongodb_url: str, label: str, **overrides: Any) -> Settings:
    """Settings whose database, queues and exchanges are this run's own, so that runs sharing
    a broker and a server (tests, fuzzing) keep apart; metrics off."""
    suffix = uuid.uuid4().hex[:10]
    names: dict[str, Any] = {
        "amqp_url": amqp_url,
        "mongodb_url": mongodb_url,
        "mongodb_database": f"pw_{label}_{suffix}",
        "import_queue": f"database_import.{suffix}",
        "import_result_queue": f"database_import_result.{suffix}",
        "relations_queue": f"relations.{suffix}",
        "relations_result_queue": f"relations_result.{suffix}",
        "relations_query_queue": f"relations_query.{suffix}",
        "events_exchange": f"profile_events.{suffix}",
        "dead_letter_exchange": f"profile_worker.dead_letter.{suffix}",
        "connection_name": f"profile-worker {label} {suffix}",
        "metrics_port": 0,
    }
    return Settings.model_validate({**names, **overrides})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[MongoStore]:
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    yield store
    await store.close()


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[Any]:
    """The test's database, read directly with pymongo to check what the worker stored."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url, tz_aware=True)
    yield client[settings.mongodb_database]
    await client.close()


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel for the test's own looks at queues."""
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    yield channel
    await connection.close()


async def removed(settings: Settings) -> None:
    """Delete the topology and drop the database of a test's settings (on any of its broker
    addresses); a service that is down (an outage test gone wrong) leaves them, and the test's
    own failure says why."""
    gone = (BrokerUnavailable, ConfigurationError, aio_pika.exceptions.AMQPError, OSError)
    with contextlib.suppress(*gone):
        connection = await connect(settings.amqp_url, "test cleanup", timeout_seconds=10)
        async with connection:
            await delete_topology(connection, settings)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url, serverSelectionTimeoutMS=5_000
    )
    with contextlib.suppress(PyMongoError):
        await client.drop_database(settings.mongodb_database)
    await client.close()


MOST_PARTITIONS = 8
"""Partition queues are deleted up to this many, whatever P the settings name: a test may run
its workers with more partitions than its fixture's settings (deleting a missing queue is a
no-op)."""


async def delete_topology(
    connection: aio_pika.abc.AbstractConnection, settings: Settings, also: Sequence[str] = ()
) -> None:
    """The queues named by a run's own settings and `also`, and its exchanges, so that runs
    sharing a broker (tests, fuzzing, floods, chaos) leave nothing behind. A refused delete
    closes its channel: the next one gets a new channel."""
    queues, exchanges = topology_names(settings.model_copy(update={"partitions": MOST_PARTITIONS}))
    channel = await connection.channel()
    for name, is_queue in [
        *((q, True) for q in [*queues, *also]),
        *((x, False) for x in exchanges),
    ]:
        try:
            await (channel.queue_delete(name) if is_queue else channel.exchange_delete(name))
        except aio_pika.exceptions.AMQPError:
            if channel.is_closed:
                channel = await connection.channel()


StartWorker = Callable[..., Awaitable[tuple[Worker, asyncio.Event, asyncio.Task[None]]]]


@pytest.fixture
async def start_worker(
    settings: Settings, store: MongoStore, broker: Any
) -> AsyncIterator[StartWorker]:
    """Start a worker in this process; every one started is stopped at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        with_store: MongoStore | None = None, with_settings: Settings | None = None
    ) -> tuple[Worker, asyncio.Event, asyncio.Task[None]]:
        stopping = asyncio.Event()
        worker = Worker(with_settings or settings, with_store or store)
        task = asyncio.create_task(worker.run(stopping))
        await asyncio.wait_for(worker.ready.wait(), 30)
        running.append((stopping, task))
        return worker, stopping, task

    yield start
    for stopping, task in running:
        stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def worker(start_worker: StartWorker) -> Worker:
    return (await start_worker())[0]


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[CommandClient]:
    async with CommandClient(settings.amqp_url) as client:
        yield client


class EventTap:
    """Everything published to the events exchange during a test, in order."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        body["_routing_key"] = message.routing_key
        await self.events.put(body)

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    def drained(self) -> list[dict[str, Any]]:
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return items


@pytest.fixture
async def event_tap(settings: Settings, broker: aio_pika.abc.AbstractChannel) -> EventTap:
    """Every event of the test, from a topology declared before any worker starts."""
    await declare(broker, settings)
    tap = EventTap()
    exchange = await broker.get_exchange(settings.events_exchange)
    queue = await broker.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    await queue.consume(tap.on_message, no_ack=True)
    return tap


@pytest.fixture
async def events(event_tap: EventTap, worker: Worker) -> EventTap:
    """Every event of the test, with a worker running."""
    return event_tap


async def first_message(
    channel: aio_pika.abc.AbstractChannel, queue_name: str, timeout: float = 10.0
) -> AbstractIncomingMessage:
    """The first message that arrives on a queue, consumed; TimeoutError if none comes."""
    [message] = await first_messages(channel, queue_name, 1, timeout)
    return message


async def first_messages(
    channel: aio_pika.abc.AbstractChannel, queue_name: str, count: int, timeout: float = 10.0
) -> list[AbstractIncomingMessage]:
    """The first `count` messages that arrive on a queue, taken one by one with `basic.get`
    (a consumer's iterator, once closed, can keep a message it had prefetched unacked on the
    channel); TimeoutError if they do not all come."""
    queue = await channel.get_queue(queue_name)
    taken: list[AbstractIncomingMessage] = []
    async with asyncio.timeout(timeout):
        while len(taken) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                taken.append(message)
    return taken


async def ask(client: CommandClient, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """Send one import command and return its result."""
    await client.send(settings.import_queue, body)
    return dict(await client.reply())


async def ask_relation(
    client: CommandClient, settings: Settings, body: dict[str, Any], message_id: str | None = None
) -> dict[str, Any]:
    """Send one relation command and return its result."""
    await client.send(settings.relations_queue, body, message_id=message_id)
    return dict(await client.reply())


async def ask_query(
    client: CommandClient, settings: Settings, body: dict[str, Any]
) -> dict[str, Any]:
    """Send one relation query (RPC) and return its answer."""
    await client.send(settings.relations_query_queue, body)
    return dict(await client.reply())


async def new_profile(
    client: CommandClient, settings: Settings, email: str, db_id: int = 10, **data: Any
) -> str:
    """Import a profile through the worker and return its id."""
    body = {**command(email, db_id=db_id), "data": {"_fname": "P", **data}}
    result = await ask(client, settings, body)
    assert result["error"] == 0, result
    return str(result["profile_id"])


async def seed_profile(mongo: Any, profile_id: str, db_id: int, **fields: Any) -> str:
    """A profile of account 1 with a chosen id, stored as the import path stores one (which
    never lets a producer choose ids): for the documented example ids and for set-ups that
    must not go through a worker."""
    await mongo.profiles.insert_one(
        {"_id": ObjectId(profile_id), "db_id": db_id, "account_id": 1, "fields": fields, "_v": 1}
    )
    return profile_id


def worker_environment(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment of a `profile-worker run` process with these settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PW_")}
    return {**env, **settings.model_copy(update=overrides).as_environment()}


def command(email: str = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    """An import command of account 1, database 10, matched by email."""
    body: dict[str, Any] = {
        "account_id": 1,
        "db_id": 10,
        "email": email,
        "token": TOKEN,
        "data": {"_fname": "Ada"},
    }
    body.update(overrides)
    return body


def new_id() -> str:
    return uuid.uuid4().hex
