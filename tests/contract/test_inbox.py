"""`Inbox`: what was decided of each command, and what its next owner makes of it: the recorded
answer, the answer of a write that landed (with its events, unsent), or the command again on
its target. A stale owner's write after its successor looked never lands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.contract.backends import Backend
from tests.contract.writes import (
    attached,
    created,
    email_key,
    profile_write,
    read,
    relation,
    relation_write,
)
from worker.contract.common import ResultModel
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.ports import Recorded, Resume, Stores
from worker.domain.shared.profiles import FieldChanges
from worker.errors import PartitionLost

A, B = "a" * 24, "b" * 24
PARTITION = "database_import.partition.0"
REFUSAL = ResultModel(error=404, error_text="profile not found")
RECORDED_REFUSAL = Recorded(REFUSAL.document())
UNSENT_REFUSAL = Recorded(REFUSAL.document(), unsent=True)
"""Recorded, not marked done: its answer may never have been sent."""


async def test_a_command_never_decided_is_not_recalled(stores: Stores) -> None:
    assert await stores.inbox.take_over(["c1", "c2"]) == {}
    assert await stores.inbox.take_over([]) == {}


async def test_a_remembered_refusal_is_unsent_until_finished(stores: Stores) -> None:
    inbox = stores.inbox
    await inbox.remember({"c1": REFUSAL})

    assert await inbox.take_over(["c1", "c2"]) == {"c1": UNSENT_REFUSAL}
    await inbox.finish(["c1"])
    await inbox.finish(["c1"])  # a copy answered again finishes again: harmless
    recalled = (await inbox.take_over(["c1"]))["c1"]
    assert recalled == RECORDED_REFUSAL
    assert isinstance(recalled, Recorded)
    assert not recalled.events


async def test_a_written_answer_is_the_answer_once_finished(stores: Stores) -> None:
    write = profile_write(new_profile_id(), command_id="c1", changes=FieldChanges(set={"a": 1}))
    assert await stores.profiles.write([write]) == ["applied"]
    await stores.inbox.finish(["c1"])

    assert await stores.inbox.take_over(["c1"]) == {"c1": Recorded(write.result.document())}


async def test_an_earlier_owner_s_landed_write_is_answered_with_its_events(
    backend: Backend,
) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    write = profile_write(new_profile_id(), command_id="c1", changes=FieldChanges(inc={"n": 1}))
    assert await earlier.profiles.write([write]) == ["applied"]  # then it is cut off, unanswered

    recalled = (await owner.inbox.take_over(["c1"]))["c1"]

    assert isinstance(recalled, Recorded)
    assert recalled.unsent
    assert recalled.result == write.result.document()
    assert list(recalled.events) == [event.document() for event in write.events]


async def test_an_earlier_owner_s_write_that_did_not_land_is_resumed_on_its_target(
    backend: Backend,
) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    await created(backend.stores, "ada@example.com")
    profile_id = new_profile_id()
    doomed = profile_write(
        profile_id,
        command_id="c1",
        changes=FieldChanges(set={"email": "ada@example.com"}),
        claims={email_key("ada@example.com"): None},
    )
    assert await earlier.profiles.write([doomed]) == ["conflict"]  # written ahead only

    assert await owner.inbox.take_over(["c1"]) == {"c1": Resume(profile_id)}
    replanned = replace(doomed, changes=FieldChanges(set={"age": 2}), claims={})
    replanned = replace(
        replanned, result=doomed.result.model_copy(update={"error_text": "replanned"})
    )
    assert await owner.profiles.write([replanned]) == ["applied"]
    await owner.inbox.finish(["c1"])
    assert await backend.stores.inbox.take_over(["c1"]) == {
        "c1": Recorded(replanned.result.document())
    }, "the latest owner's plan is the answer"


async def test_a_stale_owner_s_write_after_its_successor_looked_never_lands(
    backend: Backend,
) -> None:
    """The successor seals the target before it looks: what it saw stays true."""
    stale, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    profile = await created(backend.stores, None, n=1)
    moved = profile_write(profile.profile_id, before=profile, changes=FieldChanges(set={"m": 1}))
    assert await backend.stores.profiles.write([moved]) == ["applied"]
    incr = FieldChanges(inc={"n": 1})
    outdated = profile_write(profile.profile_id, before=profile, command_id="c1", changes=incr)
    assert await stale.profiles.write([outdated]) == ["conflict"]  # written ahead, not landed
    fresh = await read(backend.stores, profile.profile_id)

    assert await owner.inbox.take_over(["c1"]) == {"c1": Resume(profile.profile_id)}
    late = replace(outdated, before=fresh)  # the stale owner tries again, on a fresh read
    assert await stale.profiles.write([late]) == ["fenced"]
    assert (await read(backend.stores, profile.profile_id)).fields["n"] == 1


async def test_an_earlier_owner_s_refusal_is_answered_again(backend: Backend) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    await earlier.inbox.remember({"c1": REFUSAL})

    assert await owner.inbox.take_over(["c1"]) == {"c1": UNSENT_REFUSAL}


async def test_an_earlier_owner_s_relation_delete_landed_once_the_relation_is_gone(
    backend: Backend,
) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    current = await attached(backend.stores, A, B, weight=1)
    write = relation_write("delete", current, current, "c1")
    assert await earlier.relations.write([write]) == ["applied"]

    recalled = (await owner.inbox.take_over(["c1"]))["c1"]

    assert isinstance(recalled, Recorded)
    assert recalled.result == write.result.document()
    assert list(recalled.events) == [event.document() for event in write.events]


async def test_an_earlier_owner_s_relation_change_that_did_not_land_is_resumed(
    backend: Backend,
) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    current = await attached(backend.stores, A, B, weight=1)
    moved = relation_write("update", replace(current, props={"weight": 5}), current)
    assert await backend.stores.relations.write([moved]) == ["applied"]
    stale = relation_write("update", replace(current, props={"weight": 2}), current, "c1")
    assert await earlier.relations.write([stale]) == ["conflict"]

    assert await owner.inbox.take_over(["c1"]) == {"c1": Resume(current.relation_id)}


async def test_an_earlier_owner_s_relation_change_that_landed_before_a_removal_is_answered(
    backend: Backend,
) -> None:
    """The change landed on the relation a later command removed: the tombstone keeps its mark."""
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    current = await attached(backend.stores, A, B, weight=1)
    change = relation_write("update", replace(current, props={"weight": 3}), current, "c1")
    assert await earlier.relations.write([change]) == ["applied"]
    [after] = (await backend.stores.relations.relations_by_ids([current.relation_id])).values()
    removal = relation_write("delete", after, after, "c2")
    assert await earlier.relations.write([removal]) == ["applied"]

    recalled = await owner.inbox.take_over(["c1", "c2"])

    assert recalled["c1"] == Recorded(
        change.result.document(), [event.document() for event in change.events], unsent=True
    )
    assert isinstance(recalled["c2"], Recorded)


async def test_an_earlier_owner_s_relation_creation_that_landed_is_answered(
    backend: Backend,
) -> None:
    earlier, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    [relation_id] = await earlier.relations.new_relation_ids(1)
    creation = relation_write("create", relation(relation_id, A, B, weight=1), None, "c1")
    assert await earlier.relations.write([creation]) == ["applied"]

    recalled = (await owner.inbox.take_over(["c1"]))["c1"]

    assert isinstance(recalled, Recorded)
    assert list(recalled.events) == [event.document() for event in creation.events]


async def test_an_owner_that_lost_its_partition_cannot_look_at_a_target(
    backend: Backend,
) -> None:
    """Looking seals the target: an owner whose successor wrote it has lost its partition."""
    stale, owner = await backend.owner(PARTITION), await backend.owner(PARTITION)
    profile = await created(backend.stores, None, n=1)
    outdated = profile_write(profile.profile_id, command_id="c1", changes=FieldChanges())
    assert await stale.profiles.write([outdated]) == ["conflict"]  # a creation of an existing id
    assert await owner.inbox.take_over(["c1"]) == {"c1": Resume(profile.profile_id)}

    with pytest.raises(PartitionLost):
        await stale.inbox.take_over(["c1"])


async def test_forgetting_drops_what_was_recorded_before_the_moment(stores: Stores) -> None:
    inbox = stores.inbox
    await inbox.remember({"c1": REFUSAL, "c2": REFUSAL})
    await inbox.finish(["c1"])

    assert await inbox.forget_before(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert await inbox.take_over(["c1"]) == {"c1": RECORDED_REFUSAL}
    assert await inbox.forget_before(datetime(2100, 1, 1, tzinfo=UTC)) == 2

    assert await inbox.take_over(["c1", "c2"]) == {}
