"""Applied-command markers and read stamps: how the store tells what already landed.

Every write leaves its command's marker on the document it changes (`_applied.<marker>`), and
every read hands the domain an opaque stamp (version and markers). With both, a copy of a
command or a new owner after a crash can tell whether the write landed, so a non-idempotent
change (`incr`, `strengthen`) is never applied twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from worker.domain.shared.identity import short_hash
from worker.domain.shared.ports import WriteStatus
from worker.domain.shared.profiles import Profile, ProfileWrite
from worker.domain.shared.relations import Relation, RelationWrite
from worker.store.fence import Fence

MAX_MARKERS = 16
"""Markers always kept per document; they matter only until the inbox says done."""
MARKER_KEEP_LEASES = 3
"""Beyond the newest MAX_MARKERS, a marker is kept this many command leases: a command whose
owner died after its write landed is looked at again by the next owner, and its marker must be
there however many commands of other keys (other partitions) wrote the document meanwhile,
whenever the partition's next owner comes to look."""
MARKERS_HELD_AT_MOST = 1_024
"""The bound on a document's markers, whatever their age (a document written more often than
this in MARKER_KEEP_LEASES leases loses the oldest early)."""

Collection = Literal["profiles", "relations"]
"""The collections whose documents carry markers."""


@dataclass(frozen=True)
class Target:
    """The document a decided write changes: which collection, which `_id` (as the domain
    names it), and whether the write removes it (then it landed once the document is gone).
    Both inboxes keep it with the written-ahead answer; each store maps `document_id` to its
    own key."""

    collection: Collection
    document_id: str | int
    removes: bool = False


@dataclass(frozen=True)
class Stamp:
    """What a read saw of a document: the version to reserve after it, its markers, and the
    epochs of the partition owners that wrote it (`fence.py`)."""

    version: int = 0
    markers: dict[str, int] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, document: dict[str, Any]) -> Stamp:
        fences = document.get("_fence") or {}
        return cls(document.get("_v", 0), document.get("_applied") or {}, fences)

    def pruned(self, now_ms: int, keep_ms: int) -> tuple[str, ...]:
        """The markers to drop before a new one is added: beyond the newest MAX_MARKERS, those
        older than `keep_ms`; and the oldest beyond MARKERS_HELD_AT_MOST, whatever their age."""
        markers = self.markers
        by_age = sorted(markers, key=markers.__getitem__)
        newest = set(by_age[-(MAX_MARKERS - 1) :])
        over = set(by_age[: max(0, len(by_age) + 1 - MARKERS_HELD_AT_MOST)])
        stale = {name for name in by_age if markers[name] < now_ms - keep_ms} - newest
        return tuple(name for name in markers if name in stale or name in over)


def stamp_of(read: Profile | Relation | None) -> Stamp:
    """The stamp the store put on a profile or relation it read (a blank one for None)."""
    stamp = read.stamp if read is not None else None
    return stamp if isinstance(stamp, Stamp) else Stamp()


W = TypeVar("W", ProfileWrite, RelationWrite)


async def unless_landed_before(
    writes: Sequence[W],
    write_fresh: Callable[[list[W]], Awaitable[list[WriteStatus]]],
    fence: Fence | None = None,
) -> list[WriteStatus]:
    """Write only what may still land: a write planned on a read that a later owner of the
    writer's partition had written is `fenced`, and one planned on a read that already carries
    its command's marker (an earlier owner's write landed) is `landed_before`; neither is
    touched. The revision a writer then holds keeps every other writer away until it writes
    (the filter of its write fences it past a stall, see `fence.py`)."""
    before: list[WriteStatus | None] = []
    for write in writes:
        stamp = stamp_of(write.before)
        if fence is not None and not fence.allows(stamp.fences):
            before.append("fenced")
        elif write.command_id is not None and marker_of(write.command_id) in stamp.markers:
            before.append("landed_before")
        else:
            before.append(None)
    fresh = [write for write, status in zip(writes, before, strict=True) if status is None]
    statuses = iter(await write_fresh(fresh) if fresh else [])
    return [next(statuses) if status is None else status for status in before]


def landing(attempted: bool, marked: bool, overtaken: bool = False) -> WriteStatus:
    """What a write read back after the bulk means: a document a later owner of the writer's
    partition wrote is `fenced` (see `fence.py`); otherwise its own marker on its document
    after its operation was sent is its write, and the marker without its operation, an
    earlier owner's."""
    if overtaken:
        return "fenced"
    if not marked:
        return "conflict"
    return "applied" if attempted else "landed_before"


def marker_of(command_id: str | None) -> str:
    """The marker of one command: a hash of its dedup id (of a fresh id if it has none), safe
    as a field name."""
    return short_hash(command_id or uuid.uuid4().hex)


def removed_from(collection: str) -> str:
    """Where a removal keeps the markers of the document it removed (`<collection>_removed`):
    a command whose write landed on a document that a later command then removed has landed
    all the same, and a new owner must find its marker there."""
    return f"{collection}_removed"


def marker_keep_ms(lease_seconds: float) -> int:
    """How long a marker beyond the newest MAX_MARKERS is kept (see MARKER_KEEP_LEASES)."""
    return int(lease_seconds * MARKER_KEEP_LEASES * 1000)


def marker_time(now: datetime) -> int:
    """When a marker was left, in epoch milliseconds (the oldest are pruned first)."""
    return int(now.timestamp() * 1000)
