"""`run` and `topology`: the worker process itself, and the declaration of SPEC §2."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from worker import __version__
from worker.cli.common import app, console, load_settings
from worker.observability import configure_logging
from worker.runtime.endpoints import serve_endpoints
from worker.runtime.health import Health
from worker.runtime.loop import run_loop
from worker.settings import Settings, redacted

log = logging.getLogger("worker.app")


def settings_help() -> str:
    """Every setting with its environment variable and default, for `run --help`."""
    lines = []
    for name, field in Settings.model_fields.items():
        variable = f"PW_{name.upper()}"
        if name in ("amqp_url", "mongodb_url"):
            variable += f" (or {name.split('_')[0].upper()}_URL)"
        default = "unset" if field.default is None else f"`{field.default}`"
        lines.append(f"- `{variable}` = {default}")
    return "Settings, from the environment, with their defaults:\n\n" + "\n".join(lines)


@app.command(epilog=settings_help())
def run() -> None:
    """Run the worker until SIGTERM or SIGINT, then finish in-flight work and stop.

    It serves /metrics, /healthz and /readyz on PW_METRICS_PORT. A wrong setting (URL,
    credentials, virtual host, permissions, port) ends it at once with exit code 3; an
    unreachable broker or database is waited for, with backoff.
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    health = Health()
    serve_endpoints(settings.metrics_port, health)
    log.info(
        "starting",
        extra={
            "version": __version__,
            "pid": os.getpid(),
            "broker": redacted(settings.amqp_url),
            "database": redacted(settings.mongodb_url),
            "metrics_port": settings.metrics_port,
        },
    )
    run_loop(_run(settings, health), settings.event_loop)


async def _run(settings: Settings, health: Health) -> None:
    from worker.runtime.app import Worker
    from worker.store.mongo import MongoStore

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, stopping, signum)
    store = MongoStore.from_settings(settings)
    try:
        await Worker(settings, store, health).run(stopping)
    finally:
        await store.close()


def _stop(stopping: asyncio.Event, signum: signal.Signals) -> None:
    if not stopping.is_set():
        log.info("signal received", extra={"signal": signum.name})
    stopping.set()


@app.command()
def topology() -> None:
    """Declare the queues and exchanges of SPEC §2 and exit."""
    asyncio.run(_topology(load_settings()))


async def _topology(settings: Settings) -> None:
    from worker.runtime.connection import connect
    from worker.runtime.topology import declare

    async with await connect(
        settings.amqp_url, "profile-worker topology", settings.broker_connect_timeout_seconds
    ) as connection:
        await declare(await connection.channel(), settings)
    console.print("[green]topology declared[/green]")
