"""What the store adapts to on the server it talks to, learned once when the worker starts.

FerretDB 1.24 never answers an update command of 100 or more statements on existing documents
with its SQLite handler (and leaves that database locked; 99 statements take 0.6 s); with its
PostgreSQL handler the limit is its connection pool (50). Bulk writes are therefore sent in
chunks of 32 there, and in chunks of 1 000 on MongoDB-class servers, where a round trip per 32
writes would cost throughput for nothing. Until detection, the safe size holds.
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

    async def detect(self, client: AsyncMongoClient[dict[str, Any]]) -> None:
        info = await client.admin.command("buildInfo")
        if "ferretdbVersion" in info:
            self.name, self.bulk_chunk = f"ferretdb {info['ferretdbVersion']}", FERRETDB_BULK_CHUNK
        else:
            self.name, self.bulk_chunk = f"mongodb {info.get('version')}", MONGODB_BULK_CHUNK
