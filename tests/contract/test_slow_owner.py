"""An owner that loses its partition while its write is still in flight (cut off from the
broker, its batch slower than the handoff): the next owner gets the command, and the slow
write lands right after the handoff, before the next owner reads the profile. The command
must still apply once (SPEC §9), and both answers be alike.

This drives the real import processor over both stores, so that what the store contract
promises (`test_the_same_command_planned_on_a_fresh_read_is_not_applied_again`) is seen with
its consequence: an `incr` counted twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from tests.contract.backends import Backend
from tests.contract.writes import read
from tests.support import TOKEN
from worker.domain.envelope import Answered, Envelope, Replayed
from worker.domain.imports.processor import ImportProcessor
from worker.domain.shared.ports import ProfileStore, Stores, WriteStatus
from worker.domain.shared.profiles import ProfileWrite

PARTITION = "database_import.partition.0"


class HeldWrites:
    """Profile writes that wait for `release` before they are made."""

    def __init__(self, inner: ProfileStore) -> None:
        self._inner = inner
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.landed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        self.reached.set()
        await self.release.wait()
        statuses = await self._inner.write(writes)
        self.landed.set()
        return statuses


class LandsBeforeReading:
    """Profile reads that first let the held write land."""

    def __init__(self, inner: ProfileStore, held: HeldWrites) -> None:
        self._inner = inner
        self._held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def owners(self, keys: Sequence[str]) -> dict[str, str]:
        self._held.release.set()
        await self._held.landed.wait()
        return await self._inner.owners(keys)


def _processor(stores: Stores, profiles: Any) -> ImportProcessor:
    ports = replace(stores, profiles=cast(ProfileStore, profiles))
    return ImportProcessor(ports, lambda: datetime.now(UTC), 65_536)


async def test_a_slow_owner_s_write_landing_after_the_handoff_applies_once(
    backend: Backend,
) -> None:
    body = {
        "account_id": 1,
        "db_id": 10,
        "email": "ada@example.com",
        "token": TOKEN,
        "data": {"age": {"action": "incr", "value": 5}},
    }
    [created] = await _processor(backend.stores, backend.stores.profiles).process(
        [Envelope(orjson.dumps({**body, "data": {"age": 1}}))]
    )
    slow_owner = await backend.owner(PARTITION)
    held = HeldWrites(slow_owner.profiles)
    slow = asyncio.create_task(
        _processor(slow_owner, held).process([Envelope(orjson.dumps(body), "m1")])
    )
    await asyncio.wait_for(held.reached.wait(), 10)

    successor = await backend.owner(PARTITION)
    next_owner = _processor(successor, LandsBeforeReading(successor.profiles, held))
    [taken_over] = await next_owner.process([Envelope(orjson.dumps(body), "m1")])
    [finished] = await asyncio.wait_for(slow, 10)

    assert isinstance(finished, Answered | Replayed)
    assert isinstance(taken_over, Answered | Replayed)
    assert finished.result == taken_over.result
    assert isinstance(created, Answered)
    profile = await read(backend.stores, created.result.document()["profile_id"])
    assert profile.fields["age"] == 6, "the incr of m1 applied once"
