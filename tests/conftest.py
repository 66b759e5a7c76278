"""Test-wide settings: Hypothesis runs without wall-clock deadlines (shared 2-core machines);
the real services, found once per session, and the `services` marker on every test that uses
them (`pytest -m "not services"` runs the pure logic alone); the processors' `world` on the
real store, for the unit tests and the chaos findings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.integration.services import ServiceUrls, service_urls
from tests.unit.harness import World, a_world

settings.register_profile(
    "profile-worker", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("profile-worker")


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceUrls]:
    """RabbitMQ and the MongoDB-wire server, as `tests/integration/services.py` finds them."""
    with service_urls() as urls:
        yield urls


@pytest.fixture
async def world(services: ServiceUrls) -> AsyncIterator[World]:
    """The processors on the real store, on a database of the test's own."""
    async with a_world(services.mongodb_url) as world:
        yield world


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)
