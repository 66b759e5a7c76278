"""What a backfill keeps across a crash, written atomically next to the file.

`confirmed_through` is the last line N such that the broker confirmed every command of lines
1..N: `--resume` publishes from line N + 1. Lines after N may have been published too before
the crash; they are published again under the same message ids, which the worker answers
without applying them twice. The answers collected so far (which lines were answered, and
the refusals with their codes) are kept too, and an answer is acknowledged to the broker only
once a checkpoint holding it is on disk: a crash loses neither answers nor their accounting.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

VERSION = 1


class CheckpointRefused(Exception):
    """The checkpoint cannot be used for this backfill; the text says why and what to do."""


@dataclass
class Checkpoint:
    identity: str
    digest: str
    queue: str
    confirmed_through: int = 0
    ask_from: int | None = None
    """The first line from which every line published asked for its answer to the
    backfill's reply queue (None: none did)."""
    answered: bytearray = field(default_factory=bytearray)
    """One byte per line number: 1 once its answer arrived."""
    refusals: dict[int, tuple[int, str]] = field(default_factory=dict)
    """Line → (error, error_text) of every answer that refused its command."""

    def sized(self, lines: int) -> Checkpoint:
        """Room in `answered` for every line number of the file."""
        if len(self.answered) <= lines:
            self.answered.extend(bytes(lines + 1 - len(self.answered)))
        return self

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "version": VERSION,
                "identity": self.identity,
                "digest": self.digest,
                "queue": self.queue,
                "confirmed_through": self.confirmed_through,
                "ask_from": self.ask_from,
                "answered": base64.b64encode(zlib.compress(bytes(self.answered))).decode(),
                "refusals": [[line, *refusal] for line, refusal in sorted(self.refusals.items())],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        raw: dict[str, Any] = orjson.loads(data)
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')!r}, not {VERSION}")
        return cls(
            identity=str(raw["identity"]),
            digest=str(raw["digest"]),
            queue=str(raw["queue"]),
            confirmed_through=int(raw["confirmed_through"]),
            ask_from=None if raw["ask_from"] is None else int(raw["ask_from"]),
            answered=bytearray(zlib.decompress(base64.b64decode(raw["answered"]))),
            refusals={int(line): (int(code), str(text)) for line, code, text in raw["refusals"]},
        )


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint atomically: a crash leaves the old one or the new one, whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as stream:
        stream.write(checkpoint.encode())
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, None if there is none; CheckpointRefused if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Checkpoint.decode(data)
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        raise CheckpointRefused(f"the checkpoint {path} is unreadable ({exc})") from exc


def resumed(path: Path, identity: str, digest: str, queue: str) -> Checkpoint:
    """The checkpoint to resume from: refused when it belongs to another backfill."""
    checkpoint = load(path)
    if checkpoint is None:
        return Checkpoint(identity, digest, queue)
    if checkpoint.identity != identity:
        reason = (
            "the file's content changed since"
            if checkpoint.digest != digest
            else "the options (queue, format, account, database, matching, --map, --run-id) "
            "differ from those of"
        )
        raise CheckpointRefused(
            f"the checkpoint {path} belongs to another backfill: {reason} the run that wrote "
            "it; run without --resume to start over, or give another --checkpoint"
        )
    return checkpoint


@contextlib.contextmanager
def exclusive(file: Path) -> Iterator[None]:
    """One backfill of a file at a time: they would share a checkpoint and a reply queue.

    An advisory lock on the input file itself, which the kernel drops when the process dies.
    """
    with file.open("rb") as stream:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CheckpointRefused(f"another backfill of {file} is running") from exc
        yield
