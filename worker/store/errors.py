"""Driver exceptions become the worker's own at this edge.

Lost connections and timeouts are transient (`StoreUnavailable`); a wrong URL, option or
credential is a `ConfigurationError` that retrying cannot help; everything else stays
unexpected. Above the store, nothing needs to know PyMongo's exception tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)
from pymongo.errors import ConfigurationError as DriverConfigurationError

from worker.errors import ConfigurationError, StoreUnavailable, WorkerError

DUPLICATE_KEY = 11000
AUTHENTICATION_CODES = (13, 18)
"""MongoDB's Unauthorized and AuthenticationFailed."""


@contextmanager
def translated_now() -> Iterator[None]:
    """Driver exceptions in the block are raised as the worker's own (see `worker_error`);
    for synchronous driver calls (creating a client parses its URL)."""
    try:
        yield
    except PyMongoError as exc:
        error = worker_error(exc)
        if error is None:
            raise
        raise error from exc


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """`translated_now` around a block that awaits driver calls."""
    with translated_now():
        yield


def worker_error(exc: PyMongoError) -> WorkerError | None:
    """The worker's exception for a driver exception, or None if it is unexpected."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout):
        return StoreUnavailable(f"database unavailable: {first_clause(exc)}")
    if isinstance(exc, OperationFailure) and exc.code in AUTHENTICATION_CODES:
        return ConfigurationError(f"the database refused the credentials: {exc}")
    if isinstance(exc, DriverConfigurationError):
        return ConfigurationError(str(exc))
    return None


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
