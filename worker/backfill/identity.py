"""Deterministic message ids: the same line of the same backfill always gets the same id.

The worker applies a command with a known `message_id` once (SPEC §9), so a re-run of a file,
or a `--resume` that re-publishes lines a crash left unconfirmed, applies nothing twice. The
identity of a backfill is a SHA-256 digest of the file's *content* (not its name, size or
mtime: a copy or a `touch` keeps the ids, a different file under the same name gets new ones)
and of the options that shape the commands (queue, format, account, database, matching,
column mapping): the same line sent as a different command must not be answered with the
stored result of the first. The token is left out on purpose: a rotated token must not turn
an applied line into a new command. `--run-id` replaces the whole identity for operators who
edit a file and vouch that the lines already sent are unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

PREFIX = "backfill"
BLOCK_BYTES = 1 << 20
RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Content:
    """The file's content digest and how many physical lines it has (the progress total)."""

    digest: str
    lines: int


def content_of(path: Path) -> Content:
    """Read the file once, in blocks: memory stays flat whatever its size."""
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    with path.open("rb") as stream:
        while block := stream.read(BLOCK_BYTES):
            digest.update(block)
            lines += block.count(b"\n")
            last = block[-1:]
    return Content(digest.hexdigest(), lines + (last != b"\n"))


def identity_of(content: Content, shaping: Mapping[str, object], run_id: str | None) -> str:
    """The backfill's identity: `run_id` if given, else a digest of content and options."""
    if run_id is not None:
        if not RUN_ID.fullmatch(run_id):
            raise ValueError("a run id has 1 to 64 letters, digits, '_', '.' or '-'")
        return run_id
    material = orjson.dumps({"content": content.digest, **shaping}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()[:32]


def message_id(identity: str, line: int) -> str:
    """The id of one line's command; the line number can be read back from it."""
    return f"{PREFIX}:{identity}:{line}"


def line_of(correlation_id: str | None, identity: str) -> int | None:
    """The line an answer belongs to, or None when it is not one of this backfill's."""
    prefix = f"{PREFIX}:{identity}:"
    if not correlation_id or not correlation_id.startswith(prefix):
        return None
    number = correlation_id[len(prefix) :]
    return int(number) if number.isdigit() else None
