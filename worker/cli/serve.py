"""`run` and `topology`: the worker process itself, and the declaration of SPEC §2."""

from __future__ import annotations

import asyncio
import signal

from worker.cli.common import app, console
from worker.observability import configure_logging, serve_metrics
from worker.runtime.loop import run_loop
from worker.settings import Settings


@app.command()
def run() -> None:
    """Run the worker until SIGTERM or SIGINT, then finish in-flight work and stop."""
    settings = Settings()
    configure_logging(settings.log_level)
    serve_metrics(settings.metrics_port)
    run_loop(_run(settings), settings.event_loop)


async def _run(settings: Settings) -> None:
    from worker.runtime.app import Worker
    from worker.store.mongo import MongoStore

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    store = MongoStore.from_settings(settings)
    try:
        await Worker(settings, store).run(stopping)
    finally:
        await store.close()


@app.command()
def topology() -> None:
    """Declare the queues and exchanges of SPEC §2 and exit."""
    asyncio.run(_topology(Settings()))


async def _topology(settings: Settings) -> None:
    import aio_pika

    from worker.runtime.topology import declare

    async with await aio_pika.connect(settings.amqp_url) as connection:
        await declare(await connection.channel(), settings)
    console.print("[green]topology declared[/green]")
