"""The confirmed watermark moves over contiguous lines only, whatever order confirms come in."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiormq
import pytest
from pamqp.commands import Basic

from worker.backfill.publishing import Pipeline
from worker.errors import BrokerUnavailable


class Broker:
    """A channel whose confirms the test hands out, in any order."""

    def __init__(self) -> None:
        self.confirms: list[asyncio.Future[object]] = []

    async def basic_publish(self, body: bytes, **_: Any) -> object:
        confirm: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.confirms.append(confirm)
        return await confirm


async def test_the_watermark_waits_for_earlier_lines() -> None:
    broker = Broker()
    seen: list[tuple[int, int]] = []
    pipeline = Pipeline(cast(aiormq.Channel, broker), "q", 8, lambda *seen_: seen.append(seen_))
    for line in range(1, 8):  # chunks of 2: lines 1-2, 3-4, 6-7
        if line == 5:
            pipeline.passed(line)  # refused before sending: nothing to confirm
            continue
        await asyncio.wait_for(pipeline.publish(line, b"{}", Basic.Properties()), 1)
    await asyncio.sleep(0)
    for confirm in reversed(broker.confirms[2:]):  # later chunks confirmed first
        confirm.set_result(Basic.Ack())
    await asyncio.sleep(0)
    assert seen == [], "nothing counts while line 1 is unconfirmed"
    for confirm in broker.confirms[:2]:
        confirm.set_result(Basic.Ack())
    await asyncio.wait_for(pipeline.flush(), 1)
    assert seen == [(2, 2), (4, 2), (7, 2), (7, 0)]


async def test_a_refused_publish_fails_the_run() -> None:
    broker = Broker()
    pipeline = Pipeline(cast(aiormq.Channel, broker), "q", 4, lambda *_: None)
    await pipeline.publish(1, b"{}", Basic.Properties())
    await asyncio.sleep(0)
    broker.confirms[0].set_result(Basic.Nack())
    with pytest.raises(BrokerUnavailable, match=r"refused \(nack\) 1"):
        await pipeline.flush()
