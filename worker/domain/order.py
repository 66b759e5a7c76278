"""Order keys (SPEC §9): which commands must apply in the order they were queued.

Commands with one key touch one profile (an import) or one relation (a relation command). The
key decides a command's partition, so the routing stage, a producer publishing straight to the
partitions and the batch rounds of the domain all read it from here. It is cheap and needs no
catalog; a command without one is not valid, and is refused wherever it lands.
"""

from __future__ import annotations

from typing import Literal

import xxhash

from worker.contract.common import parse_json_object
from worker.contract.imports import decode_import
from worker.contract.relations import RelationCommand, decode_relation
from worker.domain.shared.matching import order_key
from worker.domain.shared.relations import ProfileKeys
from worker.errors import InvalidCommand

CommandKind = Literal["imports", "relations"]


def relation_order_key(command: RelationCommand) -> str:
    """Commands with one key touch one relation; catalog-free, it also checks the keys.

    A relation addressed by its `relation_id` has another key than the same relation addressed
    by its two profiles."""
    if command.relation_id is not None:
        return f"relation:{command.relation_id}"
    assert command.profile_a is not None
    assert command.profile_b is not None
    side_a = order_key(ProfileKeys.of(command.profile_a, 0))
    side_b = order_key(ProfileKeys.of(command.profile_b, 0))
    return f"{command.rel_id}|{side_a}|{side_b}"


def order_key_of(kind: CommandKind, body: bytes, max_bytes: int) -> str | None:
    """The order key of a command's body; None for a body that is not a valid command."""
    try:
        raw = parse_json_object(body, max_bytes)
        if kind == "imports":
            return order_key(decode_import(raw))
        return relation_order_key(decode_relation(raw))
    except InvalidCommand:
        return None


def partition_of(
    kind: CommandKind, body: bytes, partitions: int, max_bytes: int = 1_048_576
) -> int:
    """The partition (0 to `partitions` - 1) of a command: XXH64 of its order key, modulo
    the number of partitions. A body without a key is placed by its own hash: whichever
    partition gets it refuses it, and its copies land together."""
    key = order_key_of(kind, body, max_bytes)
    return xxhash.xxh64_intdigest(key.encode() if key is not None else body) % partitions


def partition_key(index: int) -> str:
    """The routing key of partition `index` on the partition exchange (a direct exchange):
    what the partition queue is bound with and what its commands are published with."""
    return str(index)


def routing_key(kind: CommandKind, body: bytes, partitions: int, max_bytes: int = 1_048_576) -> str:
    """The routing key that sends a command to its partition through the partition exchange."""
    return partition_key(partition_of(kind, body, partitions, max_bytes))
