"""`demo`: topology, catalog, a worker and the sample commands, end to end in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from worker.cli.common import app, console, load_catalog, load_settings
from worker.cli.failures import CommandFailed, ExitCode
from worker.cli.publish import publish_file
from worker.observability import configure_logging
from worker.settings import Settings


@app.command()
def demo(
    catalog: Path = Path("examples/catalog.yaml"),
    commands: Path = Path("examples/imports.jsonl"),
    relations: Path = Path("examples/relations.jsonl"),
    queries: Path = Path("examples/queries.jsonl"),
) -> None:
    """Everything at once: topology, catalog, a worker, sample imports, relation commands and
    queries, and their results."""
    settings = load_settings(metrics_port=0)
    configure_logging("WARNING")
    asyncio.run(_demo(settings, catalog, [commands, relations, queries]))


async def _demo(settings: Settings, catalog: Path, batches: list[Path]) -> None:
    from worker.runtime.app import Worker
    from worker.runtime.connection import connect
    from worker.store.mongo import MongoStore

    async with await connect(
        settings.amqp_url, "profile-worker demo", settings.broker_connect_timeout_seconds
    ):
        pass  # the broker answers: the worker below will not wait for it in vain
    store = MongoStore.from_settings(settings)
    counts = await store.catalog.apply(load_catalog(catalog))
    console.print("catalog applied: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    stopping = asyncio.Event()
    worker = Worker(settings, store)
    running = asyncio.create_task(worker.run(stopping))
    try:
        await _until_ready(worker, running)
        queues = [
            settings.import_queue,
            settings.relations_queue,
            settings.relations_query_queue,
        ]
        for path, queue in zip(batches, queues, strict=True):
            console.print(f"[bold]{path}[/bold] → {queue}")
            await publish_file(settings, path, queue, True, 60.0)
    finally:
        stopping.set()
        await running
        await store.close()
    console.print("[green]demo finished: every command answered[/green]")


async def _until_ready(worker: Any, running: asyncio.Task[None]) -> None:
    """Wait for the worker to consume; if it stops first, its failure is the demo's."""
    ready = asyncio.ensure_future(worker.ready.wait())
    await asyncio.wait({ready, running}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if running.done():
        running.result()
        raise CommandFailed("the worker stopped before consuming", ExitCode.INTERNAL)
    if not worker.ready.is_set():
        raise CommandFailed("the worker did not start consuming within 60 s", ExitCode.UNAVAILABLE)
