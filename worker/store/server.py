"""What the store adapts to on the server it talks to, learned once when the worker starts.

FerretDB 1.24 never answers an update command of 100 or more statements on existing documents
with its SQLite handler (and leaves that database locked; 99 statements take 0.6 s); with its
PostgreSQL handler the limit is its connection pool (50). Bulk writes are therefore sent in
chunks of 32 there, and in chunks of 1 000 on MongoDB-class servers, where a round trip per 32
writes would cost throughput for nothing. Until detection, the safe size holds.

mongo-java-server 1.47 (the benchmark server; it answers buildInfo without a `gitVersion`)
serves a filter from an index only when it is equality on the keys alone: the fence's
condition beside `_id` (`fence.py`) makes every update scan the collection there (78 µs →
15 ms per update at 50 000 profiles). On it the writes go without the fence's condition (they
still leave their epoch), so its figures are of the worker without that one condition, which
MongoDB and FerretDB serve from the `_id` index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

FERRETDB_BULK_CHUNK = 32
MONGODB_BULK_CHUNK = 1_000


@dataclass
class ServerTraits:
    """Shared by the repositories of one store; updated in place by `detect`."""

    name: str = "unknown"
    bulk_chunk: int = FERRETDB_BULK_CHUNK
    fences_in_filters: bool = True

    async def detect(self, client: AsyncMongoClient[dict[str, Any]]) -> None:
        info = await client.admin.command("buildInfo")
        if "ferretdbVersion" in info:
            self.name, self.bulk_chunk = f"ferretdb {info['ferretdbVersion']}", FERRETDB_BULK_CHUNK
        elif "gitVersion" not in info:
            self.name, self.bulk_chunk = "mongo-java-server", MONGODB_BULK_CHUNK
            self.fences_in_filters = False
        else:
            self.name, self.bulk_chunk = f"mongodb {info.get('version')}", MONGODB_BULK_CHUNK
