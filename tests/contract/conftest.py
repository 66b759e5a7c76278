"""One store contract suite, run against the in-memory store and a real MongoDB-wire server.

Each test gets a `Backend`: the ports of a fresh store with the test catalog applied, those of
a second process on the same data, and the ports of each next owner of a partition (their
writes carry its next epoch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.contract.backends import Backend, memory_backend, mongo_backend
from tests.integration.services import ServiceUrls, service_urls
from worker.domain.shared.ports import Stores


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceUrls]:
    """The real services, found as the integration tests find them."""
    with service_urls() as urls:
        yield urls


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        backends = memory_backend()
    else:
        backends = mongo_backend(request.getfixturevalue("services"))
    async for backend in backends:
        yield backend


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores
