"""The errors report and the tallies of a backfill's outcome.

The report is tab-separated, one line per refused input line, sorted by line number:
`line<TAB>error<TAB>error_text` (tabs and line breaks in the text become spaces). It is made
for the shell: `cut -f1` lists the lines to fix, `sort -t$'\t' -k2` groups them by code.
Lines refused before sending (not JSON, a CSV row of the wrong width) have code 400 and a
text that starts with "not sent:".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MEANINGS = {
    0: "applied",
    400: "malformed command",
    401: "token missing",
    402: "account limit reached",
    403: "token invalid or not allowed",
    404: "not found",
    409: "ambiguous match or existing relation",
    435: "unique value of another profile",
    500: "internal failure",
}

Refusals = Mapping[int, tuple[int, str]]
"""Line number → (error, error_text)."""


@dataclass(frozen=True)
class Outcome:
    """What a backfill (or a dry run) did, for the summary and the exit code."""

    lines: int
    """Lines holding a command, or a refused attempt at one."""
    skipped: int = 0
    """Lines confirmed by an earlier run, not published again (`--resume`)."""
    published: int = 0
    refusals: Refusals = field(default_factory=dict)
    waited: bool = False
    expected: int = 0
    """Answers this run waited for (`--wait-results`)."""
    answered: int = 0
    """Of those, the answers that came."""
    applied: int = 0
    """Answers with error 0, this run's and earlier runs' of the same backfill."""

    @property
    def missing(self) -> int:
        return self.expected - self.answered

    def by_code(self) -> list[tuple[int, int, str]]:
        """(error, lines, first refusal text) per error code, 0 first."""
        counts = Counter(code for code, _ in self.refusals.values())
        first: dict[int, str] = {}
        for line, (code, text) in sorted(self.refusals.items()):
            first.setdefault(code, f"line {line}: {text}")
        rows = [(0, self.applied, "")] if self.applied else []
        return rows + [(code, counts[code], first[code]) for code in sorted(counts)]


def write_errors(path: Path, refusals: Refusals) -> None:
    """Write the report whole, atomically: a reader never sees half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as stream:
        for line, (code, text) in sorted(refusals.items()):
            flat = " ".join(text.split())
            stream.write(f"{line}\t{code}\t{flat}\n")
    os.replace(temporary, path)


def read_errors(path: Path) -> dict[int, tuple[int, str]]:
    """A report as written by `write_errors` (for tests and tools)."""
    refusals = {}
    for row in path.read_text(encoding="utf-8").splitlines():
        line, code, text = row.split("\t", 2)
        refusals[int(line)] = (int(code), text)
    return refusals
