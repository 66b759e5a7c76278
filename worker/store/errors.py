"""Driver exceptions become the worker's own at this edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo.errors import BulkWriteError, ConnectionFailure, ExecutionTimeout, PyMongoError

from worker.errors import StoreUnavailable

DUPLICATE_KEY = 11000


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Lost connections and timeouts are transient; everything else stays unexpected."""
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout) as exc:
        raise StoreUnavailable(f"database unavailable: {first_clause(exc)}") from exc


def first_clause(exc: BaseException) -> str:
    """A driver message without the topology dump PyMongo appends to it."""
    return str(exc).split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]


def duplicate_indexes(exc: BulkWriteError) -> set[int]:
    """Positions in the bulk that failed on a duplicate `_id`; re-raise any other failure."""
    errors = exc.details.get("writeErrors", [])
    others = [error for error in errors if error.get("code") != DUPLICATE_KEY]
    if others or exc.details.get("writeConcernErrors"):
        raise PyMongoError(f"bulk write failed: {others[:1] or exc.details}") from exc
    return {int(error["index"]) for error in errors}
