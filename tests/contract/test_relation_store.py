"""`RelationStore`: one relation per key, writes land once and only on the relation as read, and
the reads queries are built from."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime

import pytest

from tests.contract.backends import Backend
from tests.contract.writes import LANDED, attached, relation, relation_write
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.ports import RelationFilter, Stores
from worker.domain.shared.relations import RelationWrite, relation_key
from worker.store.relations import RelationRepository
from worker.store.writes import Insert, Update

A, B, C = "a" * 24, "b" * 24, "c" * 24


async def test_a_creation_claims_its_key_and_is_read_back(stores: Stores) -> None:
    [relation_id] = await stores.relations.new_relation_ids(1)
    new = relation(relation_id, A, B, priority=70, weight=2, active=True)
    new = replace(new, relation_to_a="Father", relation_to_b="Son")

    assert await stores.relations.write([relation_write("create", new, None, "c1")]) == ["applied"]

    found, claimed = await stores.relations.relations_by_keys([new.key, relation_key(500, A, C)])
    assert found == {new.key: new}
    assert claimed == {new.key: relation_id}
    assert await stores.relations.relations_by_ids([relation_id, relation_id + 10_000]) == {
        relation_id: new
    }


async def test_a_key_of_another_live_relation_is_not_taken(stores: Stores) -> None:
    first = await attached(stores, A, B, weight=1)
    [other_id] = await stores.relations.new_relation_ids(1)
    duplicate = relation(other_id, A, B, weight=5)

    assert await stores.relations.write([relation_write("create", duplicate)]) == ["conflict"]

    found, claimed = await stores.relations.relations_by_keys([first.key])
    assert found == {first.key: first}
    assert claimed == {first.key: first.relation_id}
    assert await stores.relations.relations_by_ids([other_id]) == {}


async def test_a_creation_written_again_is_applied_once(stores: Stores) -> None:
    [relation_id] = await stores.relations.new_relation_ids(1)
    write = relation_write("create", relation(relation_id, A, B, weight=1), None, "c-attach")

    assert await stores.relations.write([write]) == ["applied"]
    assert await stores.relations.write([write]) in LANDED, "its mark is on the relation"
    assert await stores.relations.count_relations(RelationFilter(1)) == 1


class CrashedAfterClaims(Exception):
    pass


class CrashesAfterClaims(RelationRepository):
    """A repository whose process dies once its creation's key is claimed, before the insert."""

    def change(self, write: RelationWrite, now: datetime) -> Insert | Update:
        raise CrashedAfterClaims


async def test_a_creation_cut_short_is_finished_under_its_claimed_id(stores: Stores) -> None:
    """A key claimed for an id whose relation is missing (its creation was cut short) names
    that id: a creation under it succeeds, one under another id conflicts."""
    relations = stores.relations
    [cut_id] = await relations.new_relation_ids(1)
    cut = relation(cut_id, A, B)
    crashing = copy.copy(relations)
    crashing.__class__ = CrashesAfterClaims
    with pytest.raises(CrashedAfterClaims):
        await crashing.write([relation_write("create", cut)])
    assert await relations.relations_by_keys([cut.key]) == ({}, {cut.key: cut_id})

    [other_id] = await relations.new_relation_ids(1)
    other = relation(other_id, A, B, weight=2)
    assert await relations.write([relation_write("create", other)]) == ["conflict"]
    finished = relation(cut_id, A, B, weight=1)
    assert await relations.write([relation_write("create", finished)]) == ["applied"]

    found, claimed = await relations.relations_by_keys([cut.key])
    assert found == {cut.key: finished}
    assert claimed == {cut.key: cut_id}


async def test_an_update_changes_values_labels_and_priority(stores: Stores) -> None:
    current = await attached(stores, A, B, weight=1, active=False)
    changed = replace(
        current, props={"weight": 3, "active": True}, relation_to_a="Aunt", priority=90
    )

    assert await stores.relations.write([relation_write("update", changed, current)]) == ["applied"]

    stored = (await stores.relations.relations_by_ids([current.relation_id]))[current.relation_id]
    assert stored == changed


async def test_an_update_planned_on_a_stale_read_conflicts(stores: Stores) -> None:
    current = await attached(stores, A, B, weight=1)
    first = relation_write("update", replace(current, props={"weight": 2}), current, "c1")
    second = relation_write("update", replace(current, props={"weight": 11}), current, "c2")

    assert await stores.relations.write([first]) == ["applied"]
    assert await stores.relations.write([second]) == ["conflict"]
    assert await stores.relations.write([first]) == ["landed_before"], "a copy, already landed"

    stored = await stores.relations.relations_by_ids([current.relation_id])
    assert stored[current.relation_id].props == {"weight": 2}


async def test_the_same_command_planned_on_a_fresh_read_is_not_applied_again(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """As for profiles: a `strengthen` planned again on a read that already carries its mark
    must not add a second time."""
    relations = backend.stores.relations
    current = await attached(backend.stores, A, B, weight=1)
    plus = relation_write("update", replace(current, props={"weight": 2}), current, "c-plus")
    assert await relations.write([plus]) == ["applied"]
    fresh = (await relations.relations_by_ids([current.relation_id]))[current.relation_id]

    again = relation_write("update", replace(fresh, props={"weight": 3}), fresh, "c-plus")
    assert await relations.write([again]) == ["landed_before"]

    stored = await relations.relations_by_ids([current.relation_id])
    assert stored[current.relation_id].props == {"weight": 2}


async def test_a_delete_releases_the_key(stores: Stores) -> None:
    current = await attached(stores, A, B, weight=1)

    assert await stores.relations.write([relation_write("delete", current, current, "c-del")]) == [
        "applied"
    ]

    assert await stores.relations.relations_by_keys([current.key]) == ({}, {})
    assert await stores.relations.relations_by_ids([current.relation_id]) == {}
    again = await attached(stores, A, B, weight=7)
    assert again.relation_id != current.relation_id, "a new relation, under a new id"


async def test_a_delete_written_again_is_applied(stores: Stores) -> None:
    current = await attached(stores, A, B)
    write = relation_write("delete", current, current, "c-del")

    assert await stores.relations.write([write]) == ["applied"]
    assert await stores.relations.write([write]) in LANDED, "the relation is gone"


async def test_a_delete_planned_on_a_stale_read_conflicts(stores: Stores) -> None:
    current = await attached(stores, A, B, weight=1)
    changed = relation_write("update", replace(current, props={"weight": 2}), current)
    assert await stores.relations.write([changed]) == ["applied"]

    assert await stores.relations.write([relation_write("delete", current, current)]) == [
        "conflict"
    ]
    found, _ = await stores.relations.relations_by_keys([current.key])
    assert found[current.key].props == {"weight": 2}


async def test_an_update_of_a_deleted_relation_conflicts(stores: Stores) -> None:
    current = await attached(stores, A, B, weight=1)
    assert await stores.relations.write([relation_write("delete", current, current)]) == ["applied"]
    update = relation_write("update", replace(current, props={"weight": 2}), current)

    assert await stores.relations.write([update]) == ["conflict"]
    assert await stores.relations.relations_by_ids([current.relation_id]) == {}


async def test_writes_to_several_relations_report_each_status(stores: Stores) -> None:
    one = await attached(stores, A, B, weight=1)
    two = await attached(stores, A, C, weight=1)
    [new_id] = await stores.relations.new_relation_ids(1)
    bump = relation_write("update", replace(two, props={"weight": 5}), two)
    assert await stores.relations.write([bump]) == ["applied"]

    statuses = await stores.relations.write(
        [
            relation_write("update", replace(one, props={"weight": 2}), one),
            relation_write("update", replace(two, props={"weight": 2}), two),
            relation_write("create", relation(new_id, B, C)),
            relation_write("create", relation(new_id + 1_000_000, A, B)),
        ]
    )

    assert statuses == ["applied", "conflict", "applied", "conflict"]


async def test_relation_ids_are_never_handed_out_twice(backend: Backend) -> None:
    """Ids stay unique across calls and across processes on the same data."""
    ids = []
    for count in (1, 3, 150, 2):
        ids += await backend.stores.relations.new_relation_ids(count)
        ids += await backend.other.relations.new_relation_ids(count)

    assert len(ids) == len(set(ids)) == 312
    assert all(relation_id > 0 for relation_id in ids)


async def _network(stores: Stores) -> dict[str, int]:
    """Relations of account 1 around A, one between B and C, and one of account 2, by name."""
    made = {
        "ab": await attached(stores, A, B, priority=50, weight=3, visits=1, active=True),
        "ac": await attached(stores, A, C, priority=90, weight=7.5),
        "ad": await attached(stores, A, "d" * 24, priority=50, visits=4),
        "ae": await attached(stores, A, "e" * 24, priority=10, weight=-1, active=False),
        "ba": await attached(stores, B, A, priority=50, weight=100),
        "family": await attached(stores, C, A, rel_id=501, priority=70, closeness=2),
        "bc": await attached(stores, B, C, priority=60, weight=1),
        "theirs": await attached(stores, A, B, rel_id=600, account_id=2, weight=9),
    }
    return {name: r.relation_id for name, r in made.items()}


async def test_relation_counts_by_filter(stores: Stores) -> None:
    ids = await _network(stores)
    count = stores.relations.count_relations

    assert await count(RelationFilter(1)) == 7
    assert await count(RelationFilter(2)) == 1
    assert await count(RelationFilter(1, rel_id=500)) == 6
    assert await count(RelationFilter(1, rel_id=500, profile_id_a=A)) == 4
    assert await count(RelationFilter(1, rel_id=500, profile_id_a=A, having="weight")) == 3
    assert await count(RelationFilter(1, rel_id=500, profile_id_a=A, having="active")) == 2
    assert await count(RelationFilter(1, contact=A)) == 6
    assert await count(RelationFilter(1, contact=C)) == 3
    assert await count(RelationFilter(1, rel_id=501, contact=A)) == 1
    assert await count(RelationFilter(1, profile_id_a=new_profile_id())) == 0
    assert len(ids) == 8


async def test_pages_by_relation_id_continue_after_the_cursor(stores: Stores) -> None:
    ids = await _network(stores)
    where = RelationFilter(1, rel_id=500, profile_id_a=A)
    expected = sorted(ids[name] for name in ("ab", "ac", "ad", "ae"))

    first = await stores.relations.relation_page(where, by_priority=False, after=None, limit=3)
    last = first[-1].relation_id
    rest = await stores.relations.relation_page(where, by_priority=False, after=(0, last), limit=3)

    assert [r.relation_id for r in first] == expected[:3]
    assert [r.relation_id for r in rest] == expected[3:]


async def test_pages_by_priority_break_ties_by_relation_id(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    stores = backend.stores
    ids = await _network(stores)
    where = RelationFilter(1, contact=A)
    fifty = sorted(ids[name] for name in ("ab", "ad", "ba"))
    expected = [ids["ac"], ids["family"], *fifty, ids["ae"]]

    seen = []
    after: tuple[int, int] | None = None
    while True:
        page = await stores.relations.relation_page(where, by_priority=True, after=after, limit=2)
        seen += [r.relation_id for r in page]
        if len(page) < 2:
            break
        after = (page[-1].priority, page[-1].relation_id)

    assert seen == expected


async def test_property_sums_skip_missing_values_and_bools(stores: Stores) -> None:
    await _network(stores)
    where = RelationFilter(1, rel_id=500, profile_id_a=A)
    total = stores.relations.property_sum

    assert await total(replace(where, having="weight"), "weight") == pytest.approx(9.5)
    assert await total(replace(where, having="visits"), "visits") == 5
    assert isinstance(await total(replace(where, having="visits"), "visits"), int)
    assert await total(RelationFilter(1, profile_id_a=new_profile_id()), "weight") == 0


async def test_top_relations_by_value_descending(stores: Stores) -> None:
    ids = await _network(stores)
    where = RelationFilter(1, rel_id=500, profile_id_a=A)

    top = await stores.relations.top_relations(where, "weight", 2)
    everything = await stores.relations.top_relations(where, "weight", 10)

    assert [r.relation_id for r in top] == [ids["ac"], ids["ab"]]
    assert [r.relation_id for r in everything] == [ids["ac"], ids["ab"], ids["ae"]]
    assert [r.props["weight"] for r in everything] == [7.5, 3, -1]
