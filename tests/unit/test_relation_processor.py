"""`RelationProcessor` on the in-memory store: every action with its effect, result and event,
refusals, queue order, and exactly-once effects for copies of a command (SPEC §5, §9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import PARTNERS_TOKEN, READ_TOKEN, TOKEN
from tests.unit.harness import (
    CrashingWrites,
    WorkerDied,
    World,
    envelope,
    relation_command,
    run,
)
from worker.domain.shared.identity import profile_xxh
from worker.domain.shared.relations import Relation


@dataclass(frozen=True)
class Pair:
    a: str
    """A customer (database 10)."""
    b: str
    """A partner (database 11)."""


@pytest.fixture
async def pair(world: World) -> Pair:
    return Pair(
        await world.profile_id("ada@example.com", city="Oslo"),
        await world.profile_id("shop@example.com", db_id=11),
    )


def only(world: World) -> Relation:
    [relation] = world.relations_stored()
    return relation


async def attach(world: World, pair: Pair, **weights: Any) -> dict[str, Any]:
    body = relation_command("attach", pair.a, pair.b, weights=weights)
    [outcome] = await run(world.relations(), [envelope(body)])
    assert outcome.code == 0, outcome.result
    return outcome.result


async def test_attach_creates_the_relation(world: World, pair: Pair) -> None:
    body = relation_command(
        "attach",
        pair.a,
        pair.b,
        weights={"weight": 2, "active": True},
        relation_to_a="Customer",
        priority=70,
        feedback_id="fb",
    )

    [outcome] = await run(world.relations(), [envelope(body, "m1", correlation_id="corr")])

    relation = only(world)
    assert outcome.result == {
        "error": 0,
        "error_text": "",
        "feedback_id": "fb",
        "message_id": "m1",
        "correlation_id": "corr",
        "action": "attach",
        "rel_id": 500,
        "relation_id": relation.relation_id,
        "profile_a": pair.a,
        "profile_b": pair.b,
        "props": {"weight": 2, "active": True},
        "created": True,
    }
    [event] = outcome.events
    assert event["event"] == "relation.attached"
    assert (event["xxh_a"], event["xxh_b"]) == (profile_xxh(pair.a), profile_xxh(pair.b))
    assert (event["props"], event["priority"], event["relation_to_a"]) == (
        {"weight": 2, "active": True},
        70,
        "Customer",
    )
    assert (relation.profile_id_a, relation.profile_id_b, relation.priority) == (pair.a, pair.b, 70)


async def test_attach_of_an_existing_relation_is_refused_with_409(world: World, pair: Pair) -> None:
    await attach(world, pair, weight=1)

    [outcome] = await run(
        world.relations(), [envelope(relation_command("attach", pair.a, pair.b, weights={}))]
    )

    assert outcome.code == 409
    assert only(world).props == {"weight": 1}


async def test_strengthen_adds_numbers_sets_bools_and_counts_missing_as_zero(
    world: World, pair: Pair
) -> None:
    await attach(world, pair, weight=1, active=False)
    body = relation_command(
        "strengthen", pair.a, pair.b, weights={"weight": 2.5, "visits": 3, "active": True}
    )

    [outcome] = await run(world.relations(), [envelope(body)])

    assert outcome.result["props"] == {"weight": 3.5, "visits": 3, "active": True}
    assert outcome.result["created"] is False
    assert [e["event"] for e in outcome.events] == ["relation.changed"]
    assert only(world).props == {"weight": 3.5, "visits": 3, "active": True}


async def test_strengthen_and_edit_create_a_missing_relation(world: World, pair: Pair) -> None:
    other = await world.profile_id("bob@example.com")
    strengthen = relation_command("strengthen", pair.a, pair.b, weights={"weight": -2})
    edit = relation_command("edit", other, pair.b, weights={"visits": 4}, relation_to_b="Shop")

    outcomes = await run(world.relations(), [envelope(strengthen), envelope(edit)])

    assert [(o.code, o.result["created"]) for o in outcomes] == [(0, True), (0, True)]
    assert [o.events[0]["event"] for o in outcomes] == ["relation.attached"] * 2
    by_a = {r.profile_id_a: r for r in world.relations_stored()}
    assert (by_a[pair.a].props, by_a[pair.a].priority) == ({"weight": -2}, 50)
    assert (by_a[other].props, by_a[other].relation_to_b) == ({"visits": 4}, "Shop")


async def test_edit_replaces_given_values_labels_and_priority(world: World, pair: Pair) -> None:
    await attach(world, pair, weight=5, visits=1)
    body = relation_command("edit", pair.a, pair.b, weights={"weight": 1}, priority=10)

    [outcome] = await run(world.relations(), [envelope(body)])

    assert outcome.result["props"] == {"weight": 1, "visits": 1}
    assert (only(world).props, only(world).priority) == ({"weight": 1, "visits": 1}, 10)


async def test_a_change_that_changes_nothing_emits_no_event(world: World, pair: Pair) -> None:
    await attach(world, pair, weight=5)
    bodies = [
        relation_command("strengthen", pair.a, pair.b, weights={"weight": 0}),
        relation_command("edit", pair.a, pair.b, weights={"weight": 5}),
    ]

    outcomes = await run(world.relations(), [envelope(body) for body in bodies])

    assert [o.code for o in outcomes] == [0, 0]
    assert [o.events for o in outcomes] == [[], []]


async def test_detach_removes_the_relation_and_answers_its_values(world: World, pair: Pair) -> None:
    attached = await attach(world, pair, weight=5)

    [outcome] = await run(world.relations(), [envelope(relation_command("detach", pair.a, pair.b))])
    [missing] = await run(world.relations(), [envelope(relation_command("detach", pair.a, pair.b))])

    assert outcome.result["props"] == {"weight": 5}
    assert outcome.result["relation_id"] == attached["relation_id"]
    assert [e["event"] for e in outcome.events] == ["relation.detached"]
    assert world.relations_stored() == []
    assert missing.code == 404
    again = await attach(world, pair, weight=1)
    assert again["relation_id"] != attached["relation_id"], "relation ids are never reused"


async def test_a_relation_is_addressed_by_its_id(world: World, pair: Pair) -> None:
    relation_id = (await attach(world, pair, weight=1))["relation_id"]
    base = {"account_id": 1, "token": TOKEN, "relation_id": relation_id}
    bodies = [
        {**base, "action": "strengthen", "weights": {"weight": 1}},
        {**base, "action": "edit", "weights": {"visits": 2}},
        {**base, "action": "edit", "rel_id": 501, "weights": {"visits": 2}},
        {**base, "action": "detach"},
        {**base, "action": "strengthen", "relation_id": relation_id + 999, "weights": {}},
    ]

    outcomes = await run(world.relations(), [envelope(body) for body in bodies])

    assert [o.code for o in outcomes] == [0, 0, 404, 0, 404]
    assert outcomes[1].result["props"] == {"weight": 2, "visits": 2}
    assert outcomes[3].result["props"] == {"weight": 2, "visits": 2}
    assert world.relations_stored() == []


async def test_sides_are_found_by_the_import_path_s_matching(world: World, pair: Pair) -> None:
    body = relation_command("attach", pair.a, pair.b, weights={})
    body["profile_a"] = {"email": "ADA@example.com"}
    body["profile_b"] = {"matching": "email", "email": "shop@example.com"}

    [outcome] = await run(world.relations(), [envelope(body)])

    assert (outcome.result["profile_a"], outcome.result["profile_b"]) == (pair.a, pair.b)


@pytest.mark.parametrize(
    ("change", "code", "mentions"),
    [
        ({"weights": {"colour": 1}}, 400, "colour"),
        ({"weights": {"weight": True}}, 400, "weight"),
        ({"weights": {"active": 1}}, 400, "active"),
        ({"priority": 101}, 400, "priority"),
        ({"token": None}, 401, "token"),
        ({"token": READ_TOKEN}, 403, "write"),
        ({"token": PARTNERS_TOKEN}, 403, "database 10"),
        ({"account_id": 9}, 404, "account 9"),
        ({"rel_id": 777}, 404, "777"),
        ({"profile_a": {"profile_id": "0" * 24}}, 404, "profile"),
        ({"profile_b": {"email": "nobody@example.com"}}, 404, "profile"),
        (
            {"profile_a": {"matching": "custom", "field_name": "city", "field_value": "Oslo"}},
            409,
            "",
        ),
    ],
)
async def test_refusals_write_nothing(
    world: World, pair: Pair, change: dict[str, Any], code: int, mentions: str
) -> None:
    await world.profile_id("also-oslo@example.com", city="Oslo")
    body = {
        key: value
        for key, value in {
            **relation_command("attach", pair.a, pair.b, weights={}),
            **change,
        }.items()
        if value is not None
    }

    [outcome] = await run(world.relations(), [envelope(body, "m-refused")])

    assert outcome.code == code, outcome.result
    assert mentions in outcome.result["error_text"]
    assert outcome.events == []
    assert world.relations_stored() == []


async def test_commands_on_one_relation_apply_in_queue_order_within_a_batch(
    world: World, pair: Pair
) -> None:
    other = await world.profile_id("bob@example.com")
    bodies = [
        relation_command("attach", pair.a, pair.b, weights={"weight": 1}),
        relation_command("strengthen", pair.a, pair.b, weights={"weight": 2}),
        relation_command("attach", other, pair.b, weights={"weight": 7}),
        relation_command("edit", pair.a, pair.b, weights={"visits": 1}),
        relation_command("strengthen", pair.a, pair.b, weights={"weight": 3}),
        relation_command("detach", pair.a, pair.b),
        relation_command("attach", pair.a, pair.b, weights={"weight": 9}),
    ]

    outcomes = await run(world.relations(), [envelope(body) for body in bodies])

    assert [o.code for o in outcomes] == [0] * 7
    assert [o.result["props"] for o in outcomes] == [
        {"weight": 1},
        {"weight": 3},
        {"weight": 7},
        {"weight": 3, "visits": 1},
        {"weight": 6, "visits": 1},
        {"weight": 6, "visits": 1},
        {"weight": 9},
    ]
    assert [o.events[0]["event"] for o in outcomes] == [
        "relation.attached",
        "relation.changed",
        "relation.attached",
        "relation.changed",
        "relation.changed",
        "relation.detached",
        "relation.attached",
    ]
    by_a = {r.profile_id_a: r.props for r in world.relations_stored()}
    assert by_a == {pair.a: {"weight": 9}, other: {"weight": 7}}


DUPLICATED: list[tuple[str, dict[str, Any]]] = [
    ("strengthen", {"weights": {"weight": 2}}),
    ("attach", {"weights": {"weight": 2}}),
    ("detach", {}),
    ("edit", {"weights": {"visits": 4}}),
]


async def _before(world: World, pair: Pair, action: str) -> None:
    """A relation to act on, except for an attach."""
    if action != "attach":
        await attach(world, pair, weight=1)


def _expected_props(action: str) -> dict[str, Any] | None:
    return {
        "strengthen": {"weight": 3},
        "attach": {"weight": 2},
        "detach": None,
        "edit": {"weight": 1, "visits": 4},
    }[action]


def _stored_props(world: World) -> dict[str, Any] | None:
    relations = world.relations_stored()
    return None if not relations else dict(only(world).props)


@pytest.mark.parametrize("copies", [2, 3, 5])
@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_copies_in_one_batch_have_one_effect_and_one_set_of_events(
    world: World, pair: Pair, action: str, extra: dict[str, Any], copies: int
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)

    outcomes = await run(world.relations(), [envelope(body, "m1") for _ in range(copies)])

    first, rest = outcomes[0], outcomes[1:]
    assert first.code == 0, first.result
    assert not first.replayed
    assert len(first.events) == 1
    assert all(o.result == first.result for o in rest), "a copy gets the original answer"
    assert all(o.replayed and o.events == [] for o in rest)
    assert _stored_props(world) == _expected_props(action)


@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_a_copy_in_a_later_batch_gets_the_same_answer(
    world: World, pair: Pair, action: str, extra: dict[str, Any]
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)

    [first] = await run(world.relations(), [envelope(body, "m1")])
    world.clock.advance(3600)
    [again] = await run(world.relations(), [envelope(body, "m1")])

    assert first.code == 0
    assert again.result == first.result
    assert again.replayed
    assert again.events == []
    assert _stored_props(world) == _expected_props(action)


async def test_a_copy_decided_by_another_owner_right_now_is_deferred(
    world: World, pair: Pair
) -> None:
    body = relation_command("strengthen", pair.a, pair.b, weights={"weight": 2})
    deciding = world.relations()
    [first] = await deciding.process([envelope(body, "m1")])

    [copy] = await run(world.relations(), [envelope(body, "m1")])

    assert copy.defer is not None
    assert copy.result == {}
    await deciding.complete([first])
    [later] = await run(world.relations(), [envelope(body, "m1")])
    assert later.result == first.result
    assert only(world).props == {"weight": 2}


@pytest.mark.parametrize("after_landing", [True, False])
@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_a_crash_around_the_write_is_finished_by_the_next_owner_once(
    world: World, pair: Pair, action: str, extra: dict[str, Any], after_landing: bool
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)
    crashing = CrashingWrites(world.store.relations, "relations", after_landing=after_landing)
    with pytest.raises(WorkerDied):
        await world.relations(crashing).process([envelope(body, "m1")])

    [early] = await run(world.relations(), [envelope(body, "m1")])
    assert early.defer is not None, "the dead owner's lease has not ended"
    world.outlive_leases()
    outcomes = await run(world.relations(), [envelope(body, "m1")] * 2)

    answer = outcomes[0]
    assert answer.code == 0, answer.result
    assert answer.result["action"] == action
    assert answer.result["created"] is (action == "attach")
    assert not answer.replayed
    assert len(answer.events) == 1
    assert outcomes[1].result == answer.result
    assert outcomes[1].events == []
    assert _stored_props(world) == _expected_props(action)
    [again] = await run(world.relations(), [envelope(body, "m1")])
    assert again.replayed
    assert again.result == answer.result
