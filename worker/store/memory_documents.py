"""Stored documents of the in-memory store (`worker.store.memory`): state, version, markers
and fences, and the rules every in-memory write follows, as the MongoDB store's operations do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from worker.domain.shared.profiles import Profile
from worker.domain.shared.relations import Relation
from worker.store.fence import Fence
from worker.store.markers import Stamp, marker_keep_ms, marker_time, stamp_of

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Document:
    """A stored profile or relation: its state (without stamp), version and markers."""

    state: Any
    version: int
    markers: dict[str, int]
    fences: dict[str, int] = field(default_factory=dict)
    """Epochs of the partition owners that wrote it (see `worker.store.fence`)."""

    def stamp(self) -> Stamp:
        return Stamp(self.version, dict(self.markers), dict(self.fences))


def read_stamped(document: Document) -> Any:
    """A copy of a stored profile or relation, stamped with what was read."""
    return replace(copy.deepcopy(document.state), stamp=document.stamp())


def fenced_write(previous: Document | None, written: Document, fence: Fence | None) -> Document:
    """`written`, carrying the epochs its document had and the writer's own."""
    written.fences = {**(previous.fences if previous else {}), **fence_stamp_of(fence)}
    return written


def fence_stamp_of(fence: Fence | None) -> dict[str, int]:
    return {fence.key: fence.epoch} if fence else {}


def overtaken_document(fence: Fence | None, document: Document | None) -> bool:
    """A later owner of the writer's partition wrote the document."""
    return fence is not None and document is not None and not fence.allows(document.fences)


def still_as_read(document: Document | None, before: Profile | Relation | None) -> bool:
    """A creation needs no document; a change, the document at the version it was read at."""
    if before is None:
        return document is None
    return document is not None and document.version == stamp_of(before).version


def markers_after(
    document: Document | None, before: Any, marker: str, now: datetime, lease_seconds: float
) -> dict[str, int]:
    pruned = set(stamp_of(before).pruned(marker_time(now), marker_keep_ms(lease_seconds)))
    kept = {} if document is None else dict(document.markers)
    markers = {name: at for name, at in kept.items() if name not in pruned}
    markers[marker] = marker_time(now)
    return markers
