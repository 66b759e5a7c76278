"""Which contract a command queue speaks, so a backfill can be checked before it is sent.

Only the wire contract can be checked offline (`--dry-run`): shapes, types, matching keys and
the flat form. Whether the account, database or token exist and allow the write is for the
worker to say, from its catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from worker.contract.imports import decode_import
from worker.contract.relations import decode_relation
from worker.domain.order import CommandKind
from worker.errors import InvalidCommand
from worker.settings import Settings


@dataclass(frozen=True)
class Kind:
    """A command queue: its contract, and which options and formats make sense for it."""

    name: str
    queue: str
    decode: Callable[[dict[str, Any]], object]
    options: frozenset[str]
    """The options that may fill in command keys for this queue."""
    takes_csv: bool
    order: CommandKind
    """Which order keys its commands have (their partition)."""

    def problem(self, body: dict[str, Any], max_bytes: int) -> str | None:
        """What the worker would refuse with 400 in this body, if anything."""
        size = len(orjson.dumps(body))
        if size > max_bytes:
            return f"message is {size} bytes, over the limit of {max_bytes}"
        try:
            self.decode(body)
        except InvalidCommand as exc:
            return str(exc)
        return None


def kind_of(queue: str, settings: Settings) -> Kind:
    """The kind of `queue`; ValueError naming the command queues when it is none of them."""
    kinds = {
        settings.import_queue: Kind(
            "import",
            settings.import_queue,
            decode_import,
            frozenset({"account_id", "db_id", "matching", "token"}),
            takes_csv=True,
            order="imports",
        ),
        settings.relations_queue: Kind(
            "relations",
            settings.relations_queue,
            decode_relation,
            frozenset({"account_id", "token"}),
            takes_csv=False,
            order="relations",
        ),
    }
    if queue not in kinds:
        names = " or ".join(f"'{name}'" for name in kinds)
        raise ValueError(f"'{queue}' is not a command queue: it is {names}")
    return kinds[queue]
