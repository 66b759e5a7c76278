"""Graceful shutdown of a real worker process with work in flight."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from tests.integration.conftest import command, new_id, worker_environment
from worker.runtime.client import CommandClient
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

COMMANDS = 1500


async def test_sigterm_finishes_in_flight_work_and_loses_nothing(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, broker: Any
) -> None:
    await declare(broker, settings)  # before publishing: nothing may go unrouted
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "run",
        env=worker_environment(settings, batch_max_size=5, prefetch_count=50),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await client.send_many(
            settings.import_queue,
            ((new_id(), command(f"user{n}@example.com")) for n in range(COMMANDS)),
        )
        first = await client.reply(timeout=30)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()[-2000:]

    replies = [first]
    while True:
        try:
            replies.append(await client.reply(timeout=1))
        except TimeoutError:
            break
    queue = await broker.declare_queue(settings.import_queue, passive=True)
    remaining = queue.declaration_result.message_count
    assert remaining > 0, "the worker was stopped while work was still queued"
    assert len(replies) + remaining == COMMANDS, "every command is answered or still queued"
    assert all(reply["error"] == 0 for reply in replies)
    assert await mongo.profiles.count_documents({}) == len(replies), "no effect without answer"
