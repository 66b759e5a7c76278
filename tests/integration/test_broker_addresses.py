"""Several broker addresses (`PW_AMQP_URL` as a list): each connect tries them in turn, so a
worker whose first address is gone still connects, and reports where it is."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.integration.conftest import StartWorker, ask, command
from worker.errors import BrokerUnavailable
from worker.runtime.client import CommandClient
from worker.runtime.connection import connect
from worker.settings import Settings

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gone(settings: Settings) -> str:
    """An address of the test's broker user on a port where no node answers."""
    return f"amqp://guest:guest@127.0.0.1:{closed_port()}/"


def address_metric(address: str) -> float | None:
    return REGISTRY.get_sample_value("profile_worker_broker_address", {"address": address})


async def test_a_gone_address_is_passed_over_and_the_next_connect_starts_after_it(
    settings: Settings,
) -> None:
    dead = gone(settings)
    urls = f"{dead},{settings.amqp_url}"
    for _ in range(2):  # the second starts at the address after the one reached: the first
        connection = await connect(urls, "test addresses", timeout_seconds=5)
        await connection.close()
    live = settings.amqp_url.split("@", 1)[1].split("/", 1)[0]
    assert address_metric(live) == 1.0
    assert address_metric(dead.split("@", 1)[1].split("/", 1)[0]) == 0.0


async def test_when_no_address_answers_each_is_named(settings: Settings) -> None:
    first, second = gone(settings), gone(settings)

    with pytest.raises(BrokerUnavailable) as refused:
        await connect(f"{first};{second}", "test addresses", timeout_seconds=5)

    text = str(refused.value)
    assert text.startswith("no broker address answered: ")
    for url in (first, second):
        assert url.split("@", 1)[1].rstrip("/") in text


async def test_a_worker_whose_first_address_is_gone_answers_commands(
    settings: Settings, start_worker: StartWorker, client: CommandClient, mongo: Any
) -> None:
    listed = settings.model_copy(update={"amqp_url": f"{gone(settings)},{settings.amqp_url}"})
    await start_worker(with_settings=listed)

    answer = await ask(client, settings, command("listed@example.com"))

    assert answer["error"] == 0, answer
    assert await mongo.profiles.count_documents({"fields.email": "listed@example.com"}) == 1
