"""`backfill`: a JSON-lines or CSV file published to a command queue once, resumably.

The mechanics live in `worker.backfill`; this module turns options into a job, shows the
progress and the summary, and turns the outcome into the exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from worker.backfill.checkpoint import CheckpointRefused
from worker.backfill.identity import content_of, identity_of
from worker.backfill.job import Job, dry_run, run
from worker.backfill.kinds import Kind, kind_of
from worker.backfill.publishing import Unroutable
from worker.backfill.report import Outcome
from worker.backfill.source import Format, Shaping, SourceError, format_of
from worker.backfill.view import ProgressView, print_summary
from worker.cli.common import app, console, load_settings
from worker.cli.failures import CommandFailed, ExitCode
from worker.errors import BrokerUnavailable
from worker.runtime.loop import run_loop

EPILOG = """\
Every line gets a deterministic `message_id` (a digest of the file's content, the queue and
the options that shape the commands, and the line number; the token is not part of it), so a
re-run or a `--resume` applies nothing twice. `--dry-run` checks the contract only: whether
the account, database and token exist and allow the write is for the worker to say.

`--partitioned` (with PW_PARTITIONS > 1) publishes each line straight to the queue's partition
exchange `<queue>.partitions`, with the routing key the routing stage would give it, skipping
that hop.

Exit codes: 0 every line published (and, with `--wait-results`, answered with error 0);
5 `--dry-run` found invalid lines, or the checkpoint belongs to another backfill; 6 some
lines were refused (see the errors report), or not every answer came.
"""


@app.command(epilog=EPILOG)
def backfill(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    queue: Annotated[
        str | None,
        typer.Option(help="The import queue (default) or the relations queue, by name."),
    ] = None,
    source_format: Annotated[
        Format | None, typer.Option("--format", help="jsonl or csv; by default from the suffix.")
    ] = None,
    account_id: Annotated[int | None, typer.Option(help="For lines without one.")] = None,
    db_id: Annotated[int | None, typer.Option(help="For import lines without one.")] = None,
    matching: Annotated[
        str | None, typer.Option(help="For import lines without one: a mode or a field name.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="PW_BACKFILL_TOKEN", help="For lines without one.", show_default=False),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="COLUMN=FIELD",
            help="Rename a CSV column (or a JSON line's key); COLUMN= drops it. Repeatable.",
        ),
    ] = None,
    window: Annotated[
        int, typer.Option(min=1, max=100_000, help="Unconfirmed publishes at most.")
    ] = 2_000,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Progress file; default FILE.checkpoint.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue after the checkpoint's line.")] = False,
    dry_run_only: Annotated[
        bool, typer.Option("--dry-run", help="Only check the lines against the contract.")
    ] = False,
    wait_results: Annotated[
        bool, typer.Option(help="Collect every answer; refusals go to the errors report.")
    ] = False,
    errors: Annotated[
        Path | None, typer.Option(help="Errors report (line, code, text); default FILE.errors.")
    ] = None,
    timeout_seconds: Annotated[
        float,
        typer.Option(
            min=0.1, help="With --wait-results: give up after this long without an answer."
        ),
    ] = 60.0,
    run_id: Annotated[
        str | None,
        typer.Option(help="Use this identity for the message ids instead of the digest."),
    ] = None,
    partitioned: Annotated[
        bool,
        typer.Option(
            "--partitioned",
            help="Publish straight to the partitions (`<queue>.partitions`); PW_PARTITIONS > 1.",
        ),
    ] = False,
) -> None:
    """Publish a JSON-lines or CSV file of commands to a command queue, resumably.

    CSV rows become flat-form import commands (SPEC §4.1): a column per field, empty cells
    left out. Options fill in the keys a line lacks.
    """
    settings = load_settings()
    kind = _kind(queue or settings.import_queue, settings)
    if partitioned and settings.partitions == 1:
        raise typer.BadParameter(
            "publishing straight to the partitions needs PW_PARTITIONS > 1 (it is 1: the "
            f"command queue is its own partition; publish to {kind.queue} without --partitioned)",
            param_hint="--partitioned",
        )
    chosen = _format(file, source_format, kind)
    shaping = _shaping(kind, account_id, db_id, matching, token, mapping or [])
    content = content_of(file)
    fingerprint = {"queue": kind.queue, "format": chosen.value, **shaping.fingerprint()}
    try:
        identity = identity_of(content, fingerprint, run_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--run-id") from exc
    job = Job(
        file=file,
        source_format=chosen,
        shaping=shaping,
        kind=kind,
        content=content,
        identity=identity,
        checkpoint=checkpoint or file.with_name(file.name + ".checkpoint"),
        errors=errors or file.with_name(file.name + ".errors"),
        window=window,
        resume=resume,
        wait_results=wait_results,
        idle_seconds=timeout_seconds,
        max_message_bytes=settings.max_message_bytes,
        partitions=settings.partitions if partitioned else None,
    )
    outcome = _dry_run(job) if dry_run_only else _run(job, settings.amqp_url, settings.event_loop)
    print_summary(console, job, outcome, dry_run_only)
    _conclude(job, outcome, dry_run_only)


def _dry_run(job: Job) -> Outcome:
    with ProgressView(console, "checking") as view:
        outcome: Outcome = _readable(lambda: dry_run(job, view))
    return outcome


def _run(job: Job, amqp_url: str, event_loop: Any) -> Outcome:
    outcomes: list[Outcome] = []

    async def backfilling() -> None:
        with ProgressView(console, "publishing") as view:
            outcomes.append(await run(job, amqp_url, view))

    try:
        _readable(lambda: run_loop(backfilling(), event_loop))
    except CheckpointRefused as exc:
        raise CommandFailed(str(exc), ExitCode.INVALID_INPUT) from exc
    except Unroutable as exc:
        raise CommandFailed(str(exc), ExitCode.CONFIGURATION) from exc
    except BrokerUnavailable as exc:
        hint = f"; `--resume` continues after the checkpoint {job.checkpoint}"
        raise CommandFailed(
            f"{exc}{hint if job.checkpoint.exists() else ''}", ExitCode.UNAVAILABLE
        ) from exc
    return outcomes[0]


def _readable(action: Any) -> Any:
    """A file that does not hold what its format promises is invalid input, named; a
    checkpoint or report that cannot be written is a path to change."""
    try:
        return action()
    except SourceError as exc:
        raise CommandFailed(str(exc), ExitCode.INVALID_INPUT) from exc
    except OSError as exc:
        if exc.filename is None:
            raise
        text = f"cannot write {exc.filename}: {exc.strerror} (see --checkpoint and --errors)"
        raise CommandFailed(text, ExitCode.CONFIGURATION) from exc


def _conclude(job: Job, outcome: Outcome, checked_only: bool) -> None:
    refused = len(outcome.refusals)
    report = f"(see {job.errors})"
    if checked_only:
        if refused:
            text = f"{refused} of {outcome.lines} lines are invalid {report}"
            raise CommandFailed(text, ExitCode.INVALID_INPUT)
        console.print(f"dry run: all {outcome.lines} lines are valid commands for {job.kind.queue}")
        return
    if outcome.missing:
        text = (
            f"{outcome.missing} of {outcome.expected} answers did not come (none for "
            f"{job.idle_seconds:g} s); `--resume --wait-results` collects them later"
        )
        if refused:
            text += f"; {refused} lines refused so far {report}"
        raise CommandFailed(text, ExitCode.INCOMPLETE)
    if refused:
        raise CommandFailed(
            f"{refused} of {outcome.lines} lines refused {report}", ExitCode.INCOMPLETE
        )
    answered = f", {outcome.answered} answered" if outcome.waited else ""
    console.print(f"backfill done: {outcome.published} lines published to {job.target}{answered}")


def _kind(queue: str, settings: Any) -> Kind:
    try:
        return kind_of(queue, settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue") from exc


def _format(file: Path, given: Format | None, kind: Kind) -> Format:
    try:
        chosen = given or format_of(file)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from exc
    if chosen is Format.csv and not kind.takes_csv:
        raise typer.BadParameter(
            f"CSV rows become flat-form imports; {kind.name} commands need JSON lines",
            param_hint="--format",
        )
    return chosen


def _shaping(
    kind: Kind,
    account_id: int | None,
    db_id: int | None,
    matching: str | None,
    token: str | None,
    mapping: list[str],
) -> Shaping:
    given = {"account_id": account_id, "db_id": db_id, "matching": matching}
    defaults = {name: value for name, value in given.items() if value is not None}
    for name in defaults:
        if name not in kind.options:
            option = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"{kind.name} commands have no '{name}'", param_hint=option)
    pairs = {}
    for item in mapping:
        column, equals, field = item.partition("=")
        if not equals or not column:
            raise typer.BadParameter(f"'{item}' is not COLUMN=FIELD", param_hint="--map")
        pairs[column] = field
    return Shaping(defaults=defaults, mapping=pairs, token=token)
