"""One store contract suite, run against the real store (`MongoStore`) on the MongoDB-wire
test server (MONGODB_URL), one fresh database per test.

Each test gets a `Backend`: the ports of a fresh store with the test catalog applied, those of
a second process on the same data, and the ports of each next owner of a partition (their
writes carry its next epoch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.backends import Backend, mongo_backend
from tests.integration.services import ServiceUrls
from worker.domain.shared.ports import Stores


@pytest.fixture
async def backend(services: ServiceUrls) -> AsyncIterator[Backend]:
    async for backend in mongo_backend(services.mongodb_url):
        yield backend


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores
