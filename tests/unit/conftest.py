"""Unit tests of the processors run on the in-memory store, with a clock that moves on demand."""

from __future__ import annotations

import pytest

from tests.support import CATALOG, ManualClock
from tests.unit.harness import LEASE_SECONDS, World
from worker.store.memory import MemoryStore


@pytest.fixture
async def world() -> World:
    clock = ManualClock()
    store = MemoryStore(clock=clock, command_lease_seconds=LEASE_SECONDS)
    await store.catalog.apply(CATALOG)
    return World(store, clock)
