"""The input file as command bodies: JSON lines as they are, CSV rows as flat-form imports.

Both are read as a stream, so a file of millions of lines costs no more memory than one line.
A line is numbered as an editor numbers it (the CSV header is line 1), so the errors report
points at the place to fix. A line that cannot become a command (not JSON, a row with the
wrong number of cells) is not sent: it carries its problem instead, and is reported as 400.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

INT_PARAMETERS = frozenset({"account_id", "db_id", "resource_id", "trigger_id", "workflow_id"})
BOOL_PARAMETERS = frozenset({"update_only", "skip_triggers"})
BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class Format(enum.StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class SourceError(ValueError):
    """The file as a whole cannot be read as the format says (e.g. a CSV header is unusable)."""


def format_of(path: Path) -> Format:
    """The format its suffix names; ValueError when the suffix names none."""
    name = SUFFIXES.get(path.suffix.lower())
    if name is None:
        raise ValueError(f"cannot tell the format of {path.name} from its suffix: give --format")
    return Format(name)


@dataclass(frozen=True)
class Shaping:
    """What the options do to every line: rename keys, then fill in the keys a line lacks."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    mapping: Mapping[str, str] = field(default_factory=dict)
    """Column (or top-level key) → field; to "" drops the column."""
    token: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The options that change what a command means (for the identity): not the token."""
        return {"defaults": dict(self.defaults), "mapping": dict(self.mapping)}

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.mapping:
            renamed = ((self.mapping.get(key, key), value) for key, value in body.items())
            body = {key: value for key, value in renamed if key}
        for key, value in self.defaults.items():
            body.setdefault(key, value)
        if self.token is not None:
            body.setdefault("token", self.token)
        return body


@dataclass(frozen=True, slots=True)
class Line:
    """One input line: its command body, or why it has none."""

    number: int
    body: dict[str, Any] | None
    problem: str | None = None
    message_id: str | None = None
    """A JSON line's own `_message_id`, which the producer chose to be its dedup key."""


def read_lines(path: Path, source_format: Format, shaping: Shaping) -> Iterator[Line]:
    """Every line that holds something, in file order."""
    if source_format is Format.csv:
        return _csv_lines(path, shaping)
    return _json_lines(path, shaping)


def _json_lines(path: Path, shaping: Shaping) -> Iterator[Line]:
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield Line(number, None, f"not JSON: {exc}")
                continue
            if not isinstance(body, dict):
                yield Line(number, None, "not a JSON object")
                continue
            own_id = body.pop("_message_id", None)
            if own_id is not None and not isinstance(own_id, str):
                yield Line(number, None, "'_message_id' must be a string")
                continue
            yield Line(number, shaping.complete(body), message_id=own_id)


def _csv_lines(path: Path, shaping: Shaping) -> Iterator[Line]:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        columns = _columns(next(reader, []), shaping.mapping)
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                problem = f"the row has {len(row)} cells, the header {len(columns)}"
                yield Line(start, None, problem)
                continue
            pairs = zip(columns, row, strict=True)
            cells = {name: _typed(name, cell) for name, cell in pairs if name and cell}
            yield Line(start, shaping.complete(cells))


def _columns(header: list[str], mapping: Mapping[str, str]) -> list[str]:
    """The field each column becomes; "" for a column the mapping drops."""
    if not header:
        raise SourceError("the CSV file has no header row")
    names = [name.strip() for name in header]
    columns = [mapping.get(name, name) for name in names]
    kept = [name for name in columns if name]
    twice = sorted({name for name in kept if kept.count(name) > 1})
    if twice:
        raise SourceError(f"the CSV header gives field '{twice[0]}' more than one column")
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise SourceError(f"--map names column '{unknown[0]}', which the CSV header lacks")
    return columns


def _typed(name: str, cell: str) -> Any:
    """A parameter cell as the contract types it; profile fields stay text (the worker
    converts form strings losslessly, SPEC §4.3)."""
    text = cell.strip()
    if name in INT_PARAMETERS and text.lstrip("-").isdigit():
        return int(text)
    if name in BOOL_PARAMETERS and text.lower() in BOOLS:
        return BOOLS[text.lower()]
    return cell
