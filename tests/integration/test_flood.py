"""Floods (issue 10): a backlog queued before the worker starts is drained by a worker process
in bounded memory, every command answered once; and a result queue at its length limit holds
the worker back, losing nothing and acking nothing before its result is confirmed.

bench/flood.py runs the same at volume (a million commands) by hand.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from prometheus_client import REGISTRY

from tests.integration.broker_admin import BrokerAdmin
from tests.integration.conftest import StartWorker, new_id, worker_environment
from tests.integration.flood import (
    Answers,
    Effects,
    publish_queued,
    read_results,
    rss_mib,
    stopped,
    stored_effects,
)
from tests.integration.services import ServiceUrls
from worker.cli.failures import ExitCode
from worker.runtime.publisher import DEFAULT_EXCHANGE, Outgoing, Publisher, PublishRefused
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

FLOOD = 2_000
PEAK_RSS_MIB = 150
"""Issue 8's memory target for a worker process, whatever the backlog."""
LIMIT = 20
SLOW = 300


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


def refusals() -> float:
    """Results this process's publishers had refused so far (the metric)."""
    labels = {"exchange": DEFAULT_EXCHANGE}
    return REGISTRY.get_sample_value("profile_worker_publish_refusals_total", labels) or 0.0


def acked(queue: str) -> float:
    """Commands of `queue` this process's workers acked (answered, counted after the ack)."""
    labels = {"queue": queue, "code": "0", "replayed": "false"}
    return REGISTRY.get_sample_value("profile_worker_commands_total", labels) or 0.0


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Ready messages in `queue`, from a passive declare (exact, unlike the management API)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    return int(count or 0)


@pytest.mark.timeout(240)  # a hang guard, not a speed target: 2 000 took 9 s here
async def test_a_queued_flood_is_drained_in_bounded_memory_and_every_command_answered_once(
    services: ServiceUrls,
    settings: Settings,
    store: MongoStore,
    mongo: Any,
    broker: aio_pika.abc.AbstractChannel,
    tmp_path: Path,
) -> None:
    await declare(broker, settings)
    run = new_id()[:10]
    await publish_queued(settings.amqp_url, settings.import_queue, run, FLOOD)
    assert await depth(broker, settings.import_queue) == FLOOD, "all queued before the worker"

    admin = BrokerAdmin(services.management_url, settings.amqp_url)
    with (tmp_path / "worker.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=worker_environment(settings), stderr=log
        )
    unacked: list[int] = []

    async def watch() -> None:
        """The broker's count of the worker's unacked commands (lagging, but never above
        the prefetch that bounds the worker's memory)."""
        while True:
            queue = await asyncio.to_thread(admin.queue, settings.import_queue)
            unacked.append(int(queue.get("messages_unacknowledged", 0)))
            await asyncio.sleep(1.0)

    watching = asyncio.create_task(watch())
    answers = Answers(run, FLOOD)
    try:
        await read_results(settings.amqp_url, settings.import_result_queue, answers)
        _, peak = rss_mib(process.pid)
    finally:
        await stopped(process, watching)

    assert answers.codes == {0: FLOOD}, answers.codes
    assert (answers.answered, answers.duplicates, answers.foreign) == (FLOOD, 0, 0)
    assert await stored_effects(mongo) == Effects.of(FLOOD), "each effect exactly once"
    assert peak < PEAK_RSS_MIB, f"peak RSS {peak:.0f} MiB"
    assert max(unacked) <= settings.prefetch_count, unacked


@pytest.mark.timeout(90)
async def test_a_full_result_queue_holds_commands_unacked_until_a_slow_reader_catches_up(
    services: ServiceUrls,
    settings: Settings,
    store: MongoStore,
    mongo: Any,
    broker: aio_pika.abc.AbstractChannel,
    start_worker: StartWorker,
) -> None:
    limited = settings.model_copy(
        update={"result_queue_max_length": LIMIT, "batch_max_size": 10, "prefetch_count": 50}
    )
    await declare(broker, limited)
    run = new_id()[:10]
    await publish_queued(settings.amqp_url, settings.import_queue, run, SLOW)
    refused_before, acked_before = refusals(), acked(settings.import_queue)
    worker, _, _ = await start_worker(with_settings=limited)

    # Nobody reads results: the queue fills to its limit, then every publish is refused.
    async def held_back() -> bool:
        full = await depth(broker, settings.import_result_queue) == LIMIT
        return full and refusals() > refused_before

    await eventually(held_back, 30, "the worker's results refused at the limit")
    assert await depth(broker, settings.import_result_queue) == LIMIT
    answered = acked(settings.import_queue) - acked_before
    assert answered <= LIMIT, "no command acked before its result was taken"
    in_hand = worker.in_flight()[settings.import_queue]
    assert 0 < in_hand <= limited.prefetch_count, "the refused batch is held, unacked"

    admin = BrokerAdmin(services.management_url, settings.amqp_url)

    async def counted_by_the_broker() -> bool:
        queue = await asyncio.to_thread(admin.queue, settings.import_queue)
        held = queue.get("messages_ready", 0) + queue.get("messages_unacknowledged", 0)
        return bool(held == SLOW - answered and queue.get("messages_unacknowledged", 0) > 0)

    await eventually(counted_by_the_broker, 20, "every unanswered command still on the broker")
    assert await depth(broker, settings.import_result_queue) == LIMIT, "still full, none dropped"

    answers = Answers(run, SLOW)
    await read_results(
        settings.amqp_url,
        settings.import_result_queue,
        answers,
        per_second=100,
        prefetch=5,
        idle_seconds=30,
    )
    assert answers.codes == {0: SLOW}, answers.codes
    assert (answers.answered, answers.duplicates, answers.foreign) == (SLOW, 0, 0)
    assert await stored_effects(mongo) == Effects.of(SLOW), "each effect exactly once"

    async def drained() -> bool:
        return worker.in_flight()[settings.import_queue] == 0

    await eventually(drained, 10, "every command acked once its result was taken")
    assert await depth(broker, settings.import_queue) == 0


async def test_the_publisher_sends_only_the_refused_messages_again_until_they_are_taken(
    settings: Settings,
) -> None:
    connection = await aiormq.connect(settings.amqp_url)
    queue = f"publisher_limit.{new_id()[:10]}"
    try:
        channel = await connection.channel(publisher_confirms=True)
        arguments: dict[str, Any] = {"x-max-length": 3, "x-overflow": "reject-publish"}
        await channel.queue_declare(queue, durable=True, arguments=arguments)
        publisher = Publisher(channel, first_pause_seconds=0.02, max_pause_seconds=0.1)
        messages = [Outgoing(queue, b"%d" % n, message_id=str(n)) for n in range(10)]

        with pytest.raises(PublishRefused) as once:
            await publisher.publish_once(messages)
        assert [m.message_id for m in once.value.refused] == [str(n) for n in range(3, 10)]
        await channel.queue_purge(queue)

        refused_before = refusals()
        publishing = asyncio.create_task(publisher.publish(messages))

        async def refused_again() -> bool:
            return refusals() >= refused_before + 14  # 7 refused on each of two tries at least

        await eventually(refused_again, 10, "the refused messages published again")
        assert not publishing.done(), "publish waits while the queue is full"
        taken: list[bytes] = []
        while not publishing.done() or len(taken) < len(messages):
            got = await channel.basic_get(queue, no_ack=True)
            if got.body:
                taken.append(got.body)
            else:
                await asyncio.sleep(0.01)
        await publishing
        assert sorted(taken, key=int) == [m.body for m in messages], "each exactly once"
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(queue)
        await connection.close()


async def test_a_limit_on_a_result_queue_declared_without_one_stops_the_worker_with_a_hint(
    settings: Settings, broker: aio_pika.abc.AbstractChannel
) -> None:
    await declare(broker, settings)  # as every deployment before the setting existed
    env = worker_environment(settings, result_queue_max_length=LIMIT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == ExitCode.CONFIGURATION, stderr.decode()[-2000:]
    line = stderr.decode().splitlines()[-1]
    assert f"queue '{settings.import_result_queue}'" in line, line
    assert "x-max-length" in line, line
    assert "delete the queue" in line, line
