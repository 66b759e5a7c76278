"""The `profile-worker` command: run, topology, catalog, publish, demo."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from worker.domain.shared.catalog import CatalogFile, TokenEntry
from worker.observability import configure_logging, serve_metrics
from worker.runtime.loop import run_loop
from worker.settings import Settings

app = typer.Typer(
    help="profile-worker: profile import and relations from RabbitMQ commands.",
    no_args_is_help=True,
)
catalog_app = typer.Typer(
    help="Accounts, databases, resources, relation types and tokens.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")
console = Console(width=160)


def main() -> None:
    app()


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


def load_catalog(path: Path) -> CatalogFile:
    """A catalog file, YAML or JSON."""
    text = path.read_text()
    data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return CatalogFile.model_validate(data or {})


@catalog_app.command("apply")
def catalog_apply(file: Annotated[Path, typer.Argument(exists=True, readable=True)]) -> None:
    """Load a YAML/JSON catalog idempotently: entries are upserted by their ids."""
    counts = asyncio.run(_with_store(lambda store: store.catalog.apply(load_catalog(file))))
    console.print("catalog applied: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@catalog_app.command("list")
def catalog_list(
    kind: Annotated[
        str,
        typer.Argument(
            help="accounts, databases, resources, relation_types, tokens or broker_users"
        ),
    ],
) -> None:
    """Print the entries of one kind."""
    entries = asyncio.run(_with_store(lambda store: store.catalog.entries(kind)))
    for entry in entries:
        console.print_json(entry.model_dump_json())


@catalog_app.command("add-token")
def catalog_add_token(
    account_id: int,
    name: str,
    secret: Annotated[str, typer.Option(help="the token itself, 16 characters or more")],
    db_id: Annotated[
        list[int] | None, typer.Option(help="databases it may touch (all if none)")
    ] = None,
    read_only: bool = False,
) -> None:
    """Store a token (hashed) for an account."""
    entry = TokenEntry(
        name=name,
        account_id=account_id,
        token=secret,
        db_ids=tuple(db_id) if db_id else None,
        scopes=("read",) if read_only else ("read", "write"),
    )
    asyncio.run(_with_store(lambda store: store.catalog.apply(CatalogFile(tokens=(entry,)))))
    console.print(f"token '{name}' stored for account {account_id}")


async def _with_store(action: Any) -> Any:
    from worker.store.mongo import MongoStore

    store = MongoStore.from_settings(Settings())
    try:
        return await action(store)
    finally:
        await store.close()


def read_commands(path: Path) -> list[tuple[str | None, dict[str, Any]]]:
    """JSON lines: a command each, with an optional `_message_id` for the AMQP property."""
    commands = []
    for line in path.read_text().splitlines():
        if line.strip():
            body = orjson.loads(line)
            commands.append((body.pop("_message_id", None), body))
    return commands


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(exists=True, readable=True)],
    queue: str = "database_import",
    wait: Annotated[bool, typer.Option(help="wait for and print the results")] = True,
    timeout_seconds: float = 60.0,
) -> None:
    """Publish JSON-lines commands to a queue and print their results."""
    asyncio.run(_publish(Settings(), file, queue, wait, timeout_seconds))


async def _publish(
    settings: Settings, file: Path, queue: str, wait: bool, timeout_seconds: float
) -> list[dict[str, Any]]:
    from worker.runtime.client import CommandClient

    commands = read_commands(file)
    async with CommandClient(settings.amqp_url) as client:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"publishing to {queue}", total=len(commands))
            await client.send_many(
                queue, commands, reply=wait, on_sent=lambda n: progress.advance(task, n)
            )
        if not wait:
            console.print(f"published {len(commands)} commands to {queue}")
            return []
        replies = await client.replies(len(commands), timeout_seconds)
    _print_results(replies)
    return list(replies)


RESULT_COLUMNS = (
    "message_id",
    "error",
    "error_text",
    "profile_id",
    "profile_xxh",
    "created",
    "action",
    "relation_id",
    "props",
    "total_count",
    "data",
)


def _print_results(replies: list[Any]) -> None:
    """A table of the results, with the columns any of them has."""
    columns = [c for c in RESULT_COLUMNS if any(reply.get(c) is not None for reply in replies)]
    table = Table(title="results")
    for column in columns:
        table.add_column(column, overflow="fold")
    for reply in sorted(replies, key=lambda r: str(r.get("message_id") or r.correlation_id)):
        table.add_row(*(_cell(reply.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


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
            await _publish(settings, path, queue, True, 60.0)
    finally:
        stopping.set()
        await running
        await store.close()
    console.print("[green]demo finished: every command answered[/green]")
