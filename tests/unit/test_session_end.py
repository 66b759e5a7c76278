"""How a broker session ends, read from its consumers: reconnect, or stop with a
configuration error."""

from __future__ import annotations

import asyncio

import pytest

from worker.errors import BrokerUnavailable
from worker.runtime.app import _raise_for

URL = "amqp://guest:guest@127.0.0.1:5672/"


async def ended_with(exc: BaseException | None) -> asyncio.Task[None]:
    async def consume() -> None:
        if exc is not None:
            raise exc

    task = asyncio.create_task(consume())
    await asyncio.gather(task, return_exceptions=True)
    return task


async def test_a_consumer_failed_by_a_closed_channel_means_reconnect() -> None:
    """aiormq fails the futures of a channel closed without a reason with a bare Exception:
    the worker reconnects instead of exiting on it (found by the chaos suite)."""
    tasks = [await ended_with(Exception()), await ended_with(None)]
    with pytest.raises(BrokerUnavailable):
        _raise_for(tasks, lost=False, amqp_url=URL)


async def test_a_lost_connection_means_reconnect() -> None:
    with pytest.raises(BrokerUnavailable):
        _raise_for([await ended_with(None)], lost=True, amqp_url=URL)


async def test_consumers_that_ended_cleanly_end_the_session_quietly() -> None:
    _raise_for([await ended_with(None)], lost=False, amqp_url=URL)
