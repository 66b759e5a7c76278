"""Applied-command markers: what a command leaves on the document it writes.

After a crash between the write and the ack, a replay looks for its marker to tell whether the
write landed, so a non-idempotent change (`incr`, `strengthen`) is never applied twice.
"""

from __future__ import annotations

from datetime import datetime

from worker.domain.identity import short_hash

MAX_MARKERS = 16
"""Markers kept per document; they matter only until the inbox says done."""


def marker_of(operation_id: str) -> str:
    """The marker of one command: a hash of its dedup id, safe as a field name."""
    return short_hash(operation_id)


def marker_time(now: datetime) -> int:
    """When a marker was left, in epoch milliseconds (the oldest are pruned first)."""
    return int(now.timestamp() * 1000)


def pruned_markers(markers: dict[str, int]) -> tuple[str, ...]:
    """The oldest markers to drop so that, with the new one, at most MAX_MARKERS remain."""
    kept = set(sorted(markers, key=markers.__getitem__)[-(MAX_MARKERS - 1) :])
    return tuple(name for name in markers if name not in kept)
