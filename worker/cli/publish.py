"""`publish`: JSON-lines commands to a queue, and a table of their results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import Progress
from rich.table import Table

from worker.backfill.source import Format, Shaping, read_lines
from worker.cli.common import app, console, load_settings
from worker.cli.failures import CommandFailed, ExitCode
from worker.settings import Settings


def read_commands(path: Path) -> list[tuple[str | None, dict[str, Any]]]:
    """JSON lines: a command each, with an optional `_message_id` for the AMQP property; the
    first line that is not a command ends the run, naming it."""
    commands = []
    for line in read_lines(path, Format.jsonl, Shaping()):
        if line.body is None:
            raise CommandFailed(f"{path}:{line.number}: {line.problem}", ExitCode.INVALID_INPUT)
        commands.append((line.message_id, line.body))
    return commands


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(exists=True, readable=True)],
    queue: str = "database_import",
    wait: Annotated[bool, typer.Option(help="wait for and print the results")] = True,
    timeout_seconds: float = 60.0,
) -> None:
    """Publish JSON-lines commands to a queue and print their results."""
    asyncio.run(publish_file(load_settings(), file, queue, wait, timeout_seconds))


async def publish_file(
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
        try:
            replies = await client.replies(len(commands), timeout_seconds)
        except TimeoutError as exc:
            raise CommandFailed(
                f"not every result of {len(commands)} commands to {queue} arrived within "
                f"{timeout_seconds:g} s (is a worker running?)",
                ExitCode.INCOMPLETE,
            ) from exc
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
