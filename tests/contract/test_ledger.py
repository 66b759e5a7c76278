"""`Ledger`: one owner decides each command; copies get Busy, then the recorded answer; after an
owner dies, the next one learns whether its write landed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from tests.contract.backends import Backend
from tests.contract.writes import (
    attached,
    created,
    email_key,
    profile_write,
    relation,
    relation_write,
)
from worker.contract.common import ResultModel
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.ports import Busy, Recorded, Stores, Yours
from worker.domain.shared.profiles import FieldChanges

A, B = "a" * 24, "b" * 24
REFUSAL = ResultModel(error=404, error_text="profile not found")
RECORDED_REFUSAL = Recorded(REFUSAL.document())
UNSENT_REFUSAL = Recorded(REFUSAL.document(), unsent=True)
"""Recorded, not marked done: its answer may never have been sent."""


async def test_a_fresh_claim_is_yours_and_stays_yours(stores: Stores) -> None:
    assert await stores.ledger.claim(["c1", "c2"], "w1") == {"c1": Yours(), "c2": Yours()}
    assert await stores.ledger.claim(["c1"], "w1") == {"c1": Yours()}, "its owner, again"
    assert await stores.ledger.claim([], "w1") == {}


async def test_a_command_held_by_a_live_owner_is_busy(stores: Stores) -> None:
    await stores.ledger.claim(["c1"], "w1")

    assert await stores.ledger.claim(["c1", "c2"], "w2") == {"c1": Busy(), "c2": Yours()}


async def test_a_remembered_refusal_is_the_answer_once_finished(stores: Stores) -> None:
    ledger = stores.ledger
    await ledger.claim(["c1"], "w1")
    await ledger.remember({"c1": REFUSAL})

    assert await ledger.claim(["c1"], "w2") == {"c1": Busy()}, "not answered yet"
    assert await ledger.claim(["c1"], "w1") == {"c1": UNSENT_REFUSAL}

    await ledger.finish(["c1"])
    await ledger.finish(["c1"])  # a copy answered again finishes again: harmless
    claim = (await ledger.claim(["c1"], "w2"))["c1"]
    assert claim == RECORDED_REFUSAL
    assert isinstance(claim, Recorded)
    assert not claim.events


async def test_a_written_answer_is_the_answer_once_finished(stores: Stores) -> None:
    profile_id = new_profile_id()
    write = profile_write(profile_id, command_id="c1", changes=FieldChanges(set={"age": 1}))
    await stores.ledger.claim(["c1"], "w1")
    assert await stores.profiles.write([write]) == ["applied"]
    await stores.ledger.finish(["c1"])

    claims = [await stores.ledger.claim(["c1"], owner) for owner in ("w1", "w2")]

    assert claims == [{"c1": Recorded(write.result.document())}] * 2
    assert all(not claim["c1"].events for claim in claims if isinstance(claim["c1"], Recorded))


async def test_a_dead_owner_s_landed_write_is_answered_with_its_events(backend: Backend) -> None:
    profile_id = new_profile_id()
    write = profile_write(profile_id, command_id="c1", changes=FieldChanges(inc={"age": 1}))
    await backend.dying.ledger.claim(["c1"], "dead")
    assert await backend.dying.profiles.write([write]) == ["applied"]  # then it dies unanswered

    assert await backend.stores.ledger.claim(["c1"], "alive") == {"c1": Busy()}, "lease alive"
    await backend.outlive()
    claim = (await backend.stores.ledger.claim(["c1"], "alive"))["c1"]

    assert isinstance(claim, Recorded)
    assert claim.result == write.result.document()
    assert list(claim.events) == [event.document() for event in write.events]


async def test_a_dead_owner_s_write_that_did_not_land_is_yours_on_its_target(
    backend: Backend,
) -> None:
    stores = backend.stores
    await created(stores, "ada@example.com")
    profile_id = new_profile_id()
    doomed = profile_write(
        profile_id,
        command_id="c1",
        changes=FieldChanges(set={"email": "ada@example.com"}),
        claims={email_key("ada@example.com"): None},
    )
    await backend.dying.ledger.claim(["c1"], "dead")
    assert await backend.dying.profiles.write([doomed]) == ["conflict"]  # written ahead only

    await backend.outlive()
    claim = await stores.ledger.claim(["c1"], "alive")

    assert claim == {"c1": Yours(target=profile_id)}
    assert await stores.ledger.claim(["c1"], "third") == {"c1": Busy()}, "taken over once"
    replanned = replace(doomed, changes=FieldChanges(set={"age": 2}), claims={})
    replanned = replace(
        replanned, result=doomed.result.model_copy(update={"error_text": "replanned"})
    )
    assert await stores.profiles.write([replanned]) == ["applied"]
    await stores.ledger.finish(["c1"])
    assert await stores.ledger.claim(["c1"], "third") == {
        "c1": Recorded(replanned.result.document())
    }


async def test_a_dead_owner_without_an_answer_leaves_the_command_to_the_next(
    backend: Backend,
) -> None:
    await backend.dying.ledger.claim(["c1"], "dead")
    await backend.outlive()

    assert await backend.stores.ledger.claim(["c1"], "alive") == {"c1": Yours()}
    assert await backend.stores.ledger.claim(["c1"], "third") == {"c1": Busy()}


async def test_a_dead_owner_s_refusal_is_answered(backend: Backend) -> None:
    await backend.dying.ledger.claim(["c1"], "dead")
    await backend.dying.ledger.remember({"c1": REFUSAL})
    await backend.outlive()

    assert await backend.stores.ledger.claim(["c1"], "alive") == {"c1": UNSENT_REFUSAL}


async def test_a_dead_owner_s_relation_delete_landed_once_the_relation_is_gone(
    backend: Backend,
) -> None:
    current = await attached(backend.stores, A, B, weight=1)
    write = relation_write("delete", current, current, "c1")
    await backend.dying.ledger.claim(["c1"], "dead")
    assert await backend.dying.relations.write([write]) == ["applied"]

    await backend.outlive()
    claim = (await backend.stores.ledger.claim(["c1"], "alive"))["c1"]

    assert isinstance(claim, Recorded)
    assert claim.result == write.result.document()
    assert list(claim.events) == [event.document() for event in write.events]


async def test_a_dead_owner_s_relation_change_that_did_not_land_is_yours(
    backend: Backend,
) -> None:
    current = await attached(backend.stores, A, B, weight=1)
    moved = relation_write("update", replace(current, props={"weight": 5}), current)
    assert await backend.stores.relations.write([moved]) == ["applied"]
    stale = relation_write("update", replace(current, props={"weight": 2}), current, "c1")
    await backend.dying.ledger.claim(["c1"], "dead")
    assert await backend.dying.relations.write([stale]) == ["conflict"]

    await backend.outlive()

    assert await backend.stores.ledger.claim(["c1"], "alive") == {
        "c1": Yours(target=current.relation_id)
    }


async def test_a_dead_owner_s_relation_change_that_landed_before_a_removal_is_answered(
    backend: Backend,
) -> None:
    """The change's marker went with the relation a later command removed; it still landed."""
    current = await attached(backend.stores, A, B, weight=1)
    stronger = replace(current, props={"weight": 3})
    await backend.dying.ledger.claim(["c1", "c2"], "dead")
    change = relation_write("update", stronger, current, "c1")
    assert await backend.dying.relations.write([change]) == ["applied"]
    [after] = (await backend.stores.relations.relations_by_ids([current.relation_id])).values()
    removal = relation_write("delete", after, after, "c2")
    assert await backend.dying.relations.write([removal]) == ["applied"]

    await backend.outlive()
    claims = await backend.stores.ledger.claim(["c1", "c2"], "alive")

    assert claims["c1"] == Recorded(
        change.result.document(), [event.document() for event in change.events], unsent=True
    )
    assert isinstance(claims["c2"], Recorded)


async def test_a_dead_owner_s_relation_creation_that_landed_is_answered(
    backend: Backend,
) -> None:
    [relation_id] = await backend.dying.relations.new_relation_ids(1)
    created_relation = relation_write("create", relation(relation_id, A, B, weight=1), None, "c1")
    await backend.dying.ledger.claim(["c1"], "dead")
    assert await backend.dying.relations.write([created_relation]) == ["applied"]

    await backend.outlive()
    claim = (await backend.stores.ledger.claim(["c1"], "alive"))["c1"]

    assert isinstance(claim, Recorded)
    assert list(claim.events) == [event.document() for event in created_relation.events]


async def test_forgetting_drops_what_was_recorded_before_the_moment(stores: Stores) -> None:
    ledger = stores.ledger
    await ledger.claim(["c1", "c2"], "w1")
    await ledger.remember({"c1": REFUSAL})
    await ledger.finish(["c1"])

    assert await ledger.forget_before(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert await ledger.claim(["c1"], "w2") == {"c1": RECORDED_REFUSAL}
    assert await ledger.forget_before(datetime(2100, 1, 1, tzinfo=UTC)) == 2

    assert await ledger.claim(["c1", "c2"], "w2") == {"c1": Yours(), "c2": Yours()}
