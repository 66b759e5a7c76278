"""`partitions`: per command queue, its partitions and routing stage, what waits in each, and
which process holds it.

Ready messages and consumer counts come from passive declares (exact, at once); the owner
(the connection's name and the process of its consumer tag `<hostname>:<pid>:<queue>`) and the
unacked deliveries from the management HTTP API, when it answers (see `management`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from worker.cli.common import app, console, load_settings
from worker.cli.failures import CommandFailed, ExitCode
from worker.cli.management import (
    ManagementUnreachable,
    Snapshot,
    default_management_url,
    snapshot,
)
from worker.cli.survey import Family, Stage, survey

UNKNOWN = "-"
LAGGING = "?"

EPILOG = """\
Owner and unacked come from the management API (default: port 15672 on the broker's host,
with the AMQP URL's credentials); when it does not answer they are shown as `-`, and `?`
marks a consumer its statistics (up to 5 s behind) do not show yet.

Exit codes: 0 shown; 3 a queue of these partitions does not exist (declare them with
`profile-worker topology`, or check `--partitions`); 4 the broker cannot be reached.
"""


@app.command(epilog=EPILOG)
def partitions(
    management_url: Annotated[
        str | None,
        typer.Option(
            envvar="RABBITMQ_MANAGEMENT_URL",
            help="RabbitMQ's management API; default: port 15672 of the AMQP URL's host.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            max=1_024,
            help="P to look at (default PW_PARTITIONS), e.g. the old P during a migration.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show each command queue's partitions: ready, unacked, consumers and owner."""
    settings = load_settings()
    families = asyncio.run(survey(settings, count or settings.partitions))
    url = management_url or default_management_url(settings.amqp_url)
    try:
        seen: Snapshot | None = snapshot(url, settings.amqp_url)
    except ManagementUnreachable as exc:
        seen = None
        console.print(f"owner and unacked unknown ({UNKNOWN}): management API {exc}")
    rows = [
        [(stage.queue, stage.role, *_cells(stage, seen)) for stage in f.stages] for f in families
    ]
    for family, its_rows in zip(families, rows, strict=True):
        console.print(_title(family))
        console.print(_table(its_rows))
    if any(row[-1] == LAGGING for its_rows in rows for row in its_rows):
        console.print(f"{LAGGING}: consumed, but not yet in the management API's statistics")
    absent = [queue for family in families for queue in family.absent]
    if absent:
        raise CommandFailed(
            f"no queue {', '.join(absent)}: declare the topology with `profile-worker topology` "
            "(or start a worker) with these settings, or check --partitions",
            ExitCode.CONFIGURATION,
        )


def _title(family: Family) -> str:
    count, members = family.partitions.count, family.members
    processes = "?" if members is None else str(members)
    title = f"{family.partitions.queue}: {count} partition{'s' * (count != 1)}, "
    title += f"{processes} live process{'es' * (members != 1)}"
    if not family.partitions.routed:
        title += " (P = 1: the command queue is its own partition)"
    return title


def _table(rows: Sequence[tuple[str, ...]]) -> Table:
    table = Table()
    for column in ("queue", "role"):
        table.add_column(column, overflow="fold")
    for column in ("ready", "unacked", "consumers"):
        table.add_column(column, justify="right")
    table.add_column("owner", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _cells(stage: Stage, seen: Snapshot | None) -> tuple[str, str, str, str]:
    """ready, unacked, consumers, owner."""
    depth = stage.depth
    if depth is None:
        return "absent", UNKNOWN, UNKNOWN, UNKNOWN
    if seen is None:
        return str(depth.ready), UNKNOWN, str(depth.consumers), UNKNOWN
    unacked = seen.unacked.get(stage.queue)
    return (
        str(depth.ready),
        UNKNOWN if unacked is None else str(unacked),
        str(depth.consumers),
        _owner(stage, seen),
    )


def _owner(stage: Stage, seen: Snapshot) -> str:
    consumers = seen.consumers.get(stage.queue, [])
    if not consumers:
        return LAGGING if stage.depth and stage.depth.consumers else "none"
    active = [consumer for consumer in consumers if consumer.active]
    owners = ", ".join(
        f"{consumer.connection} ({consumer.tag.removesuffix(':' + stage.queue)})"
        for consumer in active
    )
    waiting = len(consumers) - len(active)
    return owners + (f" +{waiting} waiting" if waiting else "")
