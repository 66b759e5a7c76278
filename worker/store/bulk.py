"""Bulk writes in chunks the server takes (`worker.store.server`): unordered, one round trip
per chunk, errors reported as one bulk would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from worker.store.errors import duplicate_indexes


@dataclass
class BulkCounts:
    matched: int = 0
    inserted: int = 0
    deleted: int = 0
    upserted: int = 0

    @property
    def touched(self) -> int:
        """Operations that found (or made) their document."""
        return self.matched + self.inserted + self.deleted + self.upserted


async def bulk_write_chunked(
    collection: AsyncCollection[dict[str, Any]], operations: Sequence[Any], chunk_size: int
) -> BulkCounts:
    """Unordered bulk writes, chunk by chunk. Write errors of every chunk are gathered into
    one BulkWriteError whose `index` values refer to `operations`, as one bulk would give."""
    counts = BulkCounts()
    errors: list[dict[str, Any]] = []
    for start in range(0, len(operations), chunk_size):
        chunk = list(operations[start : start + chunk_size])
        details: Mapping[str, Any]
        try:
            result = await collection.bulk_write(chunk, ordered=False)
            details = result.bulk_api_result
        except BulkWriteError as exc:
            details = exc.details
            errors += [
                {**error, "index": error["index"] + start} for error in details["writeErrors"]
            ]
            if details.get("writeConcernErrors"):
                raise
        counts.matched += details.get("nMatched", 0)
        counts.inserted += details.get("nInserted", 0)
        counts.deleted += details.get("nRemoved", 0)
        counts.upserted += details.get("nUpserted", 0)
    if errors:
        raise BulkWriteError(
            {
                "writeErrors": errors,
                "writeConcernErrors": [],
                "nInserted": counts.inserted,
                "nMatched": counts.matched,
                "nRemoved": counts.deleted,
                "nUpserted": counts.upserted,
            }
        )
    return counts


async def all_touched(
    collection: AsyncCollection[dict[str, Any]], operations: Sequence[Any], chunk_size: int
) -> bool:
    """Write the operations; whether each one found or made its document.

    False also when an insert met a duplicate `_id` (a creation that already happened): the
    caller then reads back which writes landed.
    """
    if not operations:
        return True
    try:
        counts = await bulk_write_chunked(collection, operations, chunk_size)
    except BulkWriteError as exc:
        duplicate_indexes(exc)  # re-raises anything but duplicates
        return False
    return counts.touched == len(operations)
