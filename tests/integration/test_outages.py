"""Outages (SPEC §9): the database or the broker goes away under a running worker and comes
back; nothing is answered wrongly, nothing is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.conftest import StartWorker, command, new_id
from tests.integration.proxy import TcpProxy, started_proxy, through
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore


@pytest.fixture
async def db_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = await started_proxy(settings.mongodb_url)
    yield proxy
    await proxy.cut()


@pytest.fixture
async def broker_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = await started_proxy(settings.amqp_url)
    yield proxy
    await proxy.cut()


async def no_reply_within(client: CommandClient, seconds: float) -> bool:
    try:
        await client.reply(timeout=seconds)
    except TimeoutError:
        return True
    return False


async def test_consumption_pauses_while_the_database_is_down_and_resumes_after(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    store: MongoStore,
    start_worker: StartWorker,
    db_proxy: TcpProxy,
) -> None:
    cut_off = settings.model_copy(
        update={
            "mongodb_url": through(settings.mongodb_url, db_proxy),
            "mongodb_timeout_ms": 1_000,
            "reconnect_max_delay_seconds": 1,
        }
    )
    proxied_store = MongoStore.from_settings(cut_off)
    await start_worker(with_store=proxied_store, with_settings=cut_off)
    await client.send(settings.import_queue, command("before@example.com"))
    assert (await client.reply(timeout=30))["error"] == 0

    await db_proxy.cut()
    message_id = new_id()
    await client.send(settings.import_queue, command("during@example.com"), message_id=message_id)
    assert await no_reply_within(client, 4), "no answer (above all no 4xx or 500) while down"

    await db_proxy.start()
    result = await client.reply(timeout=60)
    assert (result["error"], result["created"]) == (0, True)
    assert result["correlation_id"] == message_id
    assert await mongo.profiles.count_documents({"fields.email": "during@example.com"}) == 1
    await proxied_store.close()


async def test_the_worker_reconnects_after_losing_the_broker(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    broker: Any,
    start_worker: StartWorker,
    broker_proxy: TcpProxy,
) -> None:
    await declare(broker, settings)
    cut_off = settings.model_copy(
        update={
            "amqp_url": through(settings.amqp_url, broker_proxy),
            "reconnect_max_delay_seconds": 1,
        }
    )
    await start_worker(with_settings=cut_off)
    await client.send(settings.import_queue, command("first@example.com"))
    assert (await client.reply(timeout=30))["error"] == 0

    await broker_proxy.cut()  # the command below waits in the broker, not in a dead connection
    await client.send(settings.import_queue, command("queued@example.com"))
    assert await no_reply_within(client, 2)

    await broker_proxy.start()
    result = await client.reply(timeout=60)
    assert (result["error"], result["created"]) == (0, True)
    assert await mongo.profiles.count_documents({}) == 2
