"""`demo`: topology, catalog, a worker and the sample commands, end to end in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from worker.cli.common import app, console, load_catalog
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
    settings = Settings(metrics_port=0)
    configure_logging("WARNING")
    asyncio.run(_demo(settings, catalog, [commands, relations, queries]))


async def _demo(settings: Settings, catalog: Path, batches: list[Path]) -> None:
    from worker.runtime.app import Worker
    from worker.store.mongo import MongoStore

    store = MongoStore.from_settings(settings)
    counts = await store.catalog.apply(load_catalog(catalog))
    console.print("catalog applied: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    stopping = asyncio.Event()
    worker = Worker(settings, store)
    running = asyncio.create_task(worker.run(stopping))
    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
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
