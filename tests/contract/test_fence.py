"""Fencing: once a later owner of a partition has written a document, a write of an earlier
owner of that partition never lands on it, even one planned on the document as it is now."""

from __future__ import annotations

from dataclasses import replace

from tests.contract.backends import Backend
from tests.contract.writes import attached, created, profile_write, read, relation_write
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.profiles import FieldChanges

PARTITION = "database_import.partition.3"
OTHER = "database_import.partition.5"


async def test_a_stale_owner_cannot_write_after_its_successor(backend: Backend) -> None:
    stale = await backend.owner(PARTITION)
    successor = await backend.owner(PARTITION)
    profile = await created(stale, "ada@example.com", age=1)

    bump = FieldChanges(inc={"age": 1})
    by_successor = profile_write(profile.profile_id, before=profile, changes=bump)
    assert await successor.profiles.write([by_successor]) == ["applied"]

    now = await read(backend.stores, profile.profile_id)
    late = profile_write(profile.profile_id, before=now, command_id="late", changes=bump)
    assert await stale.profiles.write([late]) == ["fenced"], "planned on today's version"
    assert (await read(backend.stores, profile.profile_id)).fields["age"] == 2

    other_owner = await backend.owner(OTHER)
    other = profile_write(profile.profile_id, before=now, changes=bump)
    assert await other_owner.profiles.write([other]) == ["applied"], "another partition's owner"
    assert (await read(backend.stores, profile.profile_id)).fields["age"] == 3


async def test_a_stale_owner_cannot_change_or_remove_a_relation_after_its_successor(
    backend: Backend,
) -> None:
    stale = await backend.owner(PARTITION)
    successor = await backend.owner(PARTITION)
    new = await attached(stale, new_profile_id(), new_profile_id(), weight=1)
    stronger = replace(new, props={"weight": 2}, stamp=None)
    assert await successor.relations.write([relation_write("update", stronger, new)]) == ["applied"]
    [now] = (await backend.stores.relations.relations_by_ids([new.relation_id])).values()

    weaker = replace(now, props={"weight": 0}, stamp=None)
    assert await stale.relations.write([relation_write("update", weaker, now, "late")]) == [
        "fenced"
    ]
    assert await stale.relations.write([relation_write("delete", now, now, "gone")]) == ["fenced"]
    [kept] = (await backend.stores.relations.relations_by_ids([new.relation_id])).values()
    assert kept.props == {"weight": 2}


async def test_the_owners_of_two_partitions_in_one_process_never_share_a_relation_id(
    backend: Backend,
) -> None:
    first, second = await backend.owner(PARTITION), await backend.owner(OTHER)
    ids = [
        *await first.relations.new_relation_ids(1),
        *await second.relations.new_relation_ids(1),
        *await first.relations.new_relation_ids(150),
        *await second.relations.new_relation_ids(150),
    ]
    assert len(set(ids)) == len(ids) == 302
