"""What an operator sees of a backfill: progress bars while it runs, tables when it ends."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from worker.backfill.job import Job
from worker.backfill.report import MEANINGS, Outcome


class RateColumn(ProgressColumn):
    """Lines (or answers) per second, as recently measured."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", style="progress.data.speed")


class ProgressView:
    """The job's `Observer`: a bar for the lines, and one for the answers once they come."""

    def __init__(self, console: Console, verb: str) -> None:
        self._verb = verb
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("errors: {task.fields[errors]}"),
            console=console,
        )
        self._lines: TaskID | None = None
        self._answers: TaskID | None = None

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def started(self, lines: int, after: int) -> None:
        description = self._verb if not after else f"{self._verb} after line {after}"
        self._lines = self._progress.add_task(description, total=lines, completed=after, errors=0)

    def published(self, line: int, errors: int) -> None:
        if self._lines is not None:
            self._progress.update(self._lines, completed=line, errors=errors)

    def answered(self, done: int, expected: int, errors: int) -> None:
        if self._answers is None:
            self._answers = self._progress.add_task("answers", total=expected, errors=errors)
        self._progress.update(self._answers, completed=done, total=expected, errors=errors)


def print_summary(console: Console, job: Job, outcome: Outcome, dry_run: bool) -> None:
    """The counts of the run, then the lines per error code with the first text of each."""
    console.print(f"[bold]{job.file}[/bold] → {job.target}")
    counts = Table(show_header=False)
    counts.add_column("what")
    counts.add_column("lines", justify="right")
    rows = [("lines with a command", outcome.lines)]
    if dry_run:
        rows.append(("invalid", len(outcome.refusals)))
    else:
        sent_before = [("confirmed by an earlier run", outcome.skipped)] if outcome.skipped else []
        not_sent = sum(1 for _, text in outcome.refusals.values() if text.startswith("not sent"))
        rows += [*sent_before, ("published now", outcome.published), ("not sent", not_sent)]
    if outcome.waited:
        rows += [("answers expected", outcome.expected), ("answers received", outcome.answered)]
    for what, count in rows:
        counts.add_row(what, f"{count:,}")
    console.print(counts)
    by_code = outcome.by_code()
    if not by_code:
        return
    codes = Table(title="by error code")
    for column in ("error", "meaning", "lines", "first"):
        codes.add_column(column, justify="right" if column == "lines" else "left")
    for code, count, first in by_code:
        codes.add_row(str(code), MEANINGS.get(code, ""), f"{count:,}", first)
    console.print(codes)
