"""The store adapts its bulk size to the server (`worker.store.server`); both sizes agree."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import InsertOne
from pymongo.errors import BulkWriteError

from worker.store.bulk import bulk_write_chunked
from worker.store.mongo import MongoStore
from worker.store.server import FERRETDB_BULK_CHUNK, MONGODB_BULK_CHUNK


async def test_the_server_is_recognised(store: MongoStore, mongo: Any) -> None:
    await store.ensure_indexes()
    info = await mongo.client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        assert store.server.name.startswith("ferretdb")
        assert store.server.bulk_chunk == FERRETDB_BULK_CHUNK
    else:
        assert store.server.name.startswith("mongodb")
        assert store.server.bulk_chunk == MONGODB_BULK_CHUNK


@pytest.mark.parametrize("chunk_size", [7, MONGODB_BULK_CHUNK])
async def test_chunks_report_like_one_bulk(store: MongoStore, mongo: Any, chunk_size: int) -> None:
    await mongo.chunked.insert_many([{"_id": n} for n in range(0, 40, 10)])
    operations = [InsertOne({"_id": n}) for n in range(40)]
    with pytest.raises(BulkWriteError) as failure:
        await bulk_write_chunked(mongo.chunked, operations, chunk_size)
    errors = failure.value.details["writeErrors"]
    assert sorted(error["index"] for error in errors) == [0, 10, 20, 30]
    assert failure.value.details["nInserted"] == 36
    assert await mongo.chunked.count_documents({}) == 40
