"""Taking over a dead owner's command claim is two writes on the server (the takeover record,
then the claim). An owner cut off between them (killed, its connection lost, its batch
cancelled when the broker went away) must not leave the command held forever: found by the
chaos suite, where a broker restart cancelled a batch there and 400 imports queued behind the
command waited until the run timed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from tests.integration.conftest import services, settings  # noqa: F401 (fixtures)
from worker.domain.shared.ports import Busy, Yours
from worker.errors import StoreUnavailable
from worker.settings import Settings
from worker.store.mongo import MongoStore

pytestmark = pytest.mark.integration

LEASE_SECONDS = 0.5


class CutBeforeClaimUpdate:
    """The claims collection of an owner cut off right after its takeover record."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def update_one(self, *_: Any, **__: Any) -> Any:
        raise AutoReconnect("connection lost")


Owner = Callable[[], Awaitable[MongoStore]]


@pytest.fixture
async def owner(settings: Settings) -> AsyncIterator[Owner]:  # noqa: F811
    """A process on the test's database, its command claims a short lease long; closed after."""
    short_lease = settings.model_copy(update={"command_lease_seconds": LEASE_SECONDS})
    stores: list[MongoStore] = []

    async def started() -> MongoStore:
        stores.append(MongoStore.from_settings(short_lease))
        await stores[-1].ensure_indexes()
        return stores[-1]

    yield started
    for store in stores:
        await store.close()


async def cut_off_taking_over(owner: Owner, command_id: str) -> MongoStore:
    """A dead owner's claim on `command_id`, then an owner cut off taking it over."""
    dead, cut = await owner(), await owner()
    assert await dead.ledger.claim([command_id], "dead") == {command_id: Yours()}
    await asyncio.sleep(LEASE_SECONDS * 1.5)
    real_claims = cut.ledger._claims
    cut.ledger._claims = CutBeforeClaimUpdate(real_claims)  # type: ignore[assignment]
    with pytest.raises(StoreUnavailable):
        await cut.ledger.claim([command_id], "cut")
    cut.ledger._claims = real_claims
    return cut


async def test_the_owner_cut_off_mid_takeover_resumes_the_command(owner: Owner) -> None:
    cut = await cut_off_taking_over(owner, "c1")

    assert await cut.ledger.claim(["c1"], "cut") == {"c1": Yours()}, "before: Busy forever"
    other = await owner()
    assert await other.ledger.claim(["c1"], "other") == {"c1": Busy()}, "its lease is live"


async def test_after_the_cut_off_owner_s_lease_exactly_one_other_takes_the_command(
    owner: Owner,
) -> None:
    await cut_off_taking_over(owner, "c1")  # and it dies there
    first, second = await owner(), await owner()

    assert await first.ledger.claim(["c1"], "first") == {"c1": Busy()}, "its lease is live"
    await asyncio.sleep(LEASE_SECONDS * 1.5)
    claims = await asyncio.gather(
        first.ledger.claim(["c1"], "first"), second.ledger.claim(["c1"], "second")
    )

    assert sorted(type(claim["c1"]).__name__ for claim in claims) == ["Busy", "Yours"]
    assert await first.ledger.claim(["c1"], "first") == claims[0], "and it stays so"


async def test_the_cut_off_owner_back_after_its_lease_takes_the_command_anew(
    owner: Owner,
) -> None:
    cut = await cut_off_taking_over(owner, "c1")
    await asyncio.sleep(LEASE_SECONDS * 1.5)

    assert await cut.ledger.claim(["c1"], "cut") == {"c1": Yours()}, "nobody took it meanwhile"
    other = await owner()
    assert await other.ledger.claim(["c1"], "other") == {"c1": Busy()}, "with a fresh lease"
    await asyncio.sleep(LEASE_SECONDS * 1.5)
    assert await other.ledger.claim(["c1"], "other") == {"c1": Yours()}, "which ends in turn"
    assert await cut.ledger.claim(["c1"], "cut") == {"c1": Busy()}
