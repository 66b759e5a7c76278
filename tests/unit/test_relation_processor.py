"""`RelationProcessor` on the real store: every action with its effect, result and event,
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
    code_of,
    envelope,
    events_of,
    relation_command,
    result_of,
    run,
)
from worker.domain.envelope import Answered, Replayed
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


async def only(world: World) -> Relation:
    [relation] = await world.relations_stored()
    return relation


async def attach(world: World, pair: Pair, **weights: Any) -> dict[str, Any]:
    body = relation_command("attach", pair.a, pair.b, weights=weights)
    [outcome] = await run(world.relations(), [envelope(body)])
    assert code_of(outcome) == 0, result_of(outcome)
    return result_of(outcome)


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

    relation = await only(world)
    assert result_of(outcome) == {
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
    [event] = events_of(outcome)
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

    assert code_of(outcome) == 409
    assert (await only(world)).props == {"weight": 1}


async def test_strengthen_adds_numbers_sets_bools_and_counts_missing_as_zero(
    world: World, pair: Pair
) -> None:
    await attach(world, pair, weight=1, active=False)
    body = relation_command(
        "strengthen", pair.a, pair.b, weights={"weight": 2.5, "visits": 3, "active": True}
    )

    [outcome] = await run(world.relations(), [envelope(body)])

    assert result_of(outcome)["props"] == {"weight": 3.5, "visits": 3, "active": True}
    assert result_of(outcome)["created"] is False
    assert [e["event"] for e in events_of(outcome)] == ["relation.changed"]
    assert (await only(world)).props == {"weight": 3.5, "visits": 3, "active": True}


async def test_strengthen_and_edit_create_a_missing_relation(world: World, pair: Pair) -> None:
    other = await world.profile_id("bob@example.com")
    strengthen = relation_command("strengthen", pair.a, pair.b, weights={"weight": -2})
    edit = relation_command("edit", other, pair.b, weights={"visits": 4}, relation_to_b="Shop")

    outcomes = await run(world.relations(), [envelope(strengthen), envelope(edit)])

    assert [(code_of(o), result_of(o)["created"]) for o in outcomes] == [(0, True), (0, True)]
    assert [events_of(o)[0]["event"] for o in outcomes] == ["relation.attached"] * 2
    by_a = {r.profile_id_a: r for r in await world.relations_stored()}
    assert (by_a[pair.a].props, by_a[pair.a].priority) == ({"weight": -2}, 50)
    assert (by_a[other].props, by_a[other].relation_to_b) == ({"visits": 4}, "Shop")


async def test_edit_replaces_given_values_labels_and_priority(world: World, pair: Pair) -> None:
    await attach(world, pair, weight=5, visits=1)
    body = relation_command("edit", pair.a, pair.b, weights={"weight": 1}, priority=10)

    [outcome] = await run(world.relations(), [envelope(body)])

    assert result_of(outcome)["props"] == {"weight": 1, "visits": 1}
    assert ((await only(world)).props, (await only(world)).priority) == (
        {"weight": 1, "visits": 1},
        10,
    )


async def test_a_change_that_changes_nothing_emits_no_event(world: World, pair: Pair) -> None:
    await attach(world, pair, weight=5)
    bodies = [
        relation_command("strengthen", pair.a, pair.b, weights={"weight": 0}),
        relation_command("edit", pair.a, pair.b, weights={"weight": 5}),
    ]

    outcomes = await run(world.relations(), [envelope(body) for body in bodies])

    assert [code_of(o) for o in outcomes] == [0, 0]
    assert [events_of(o) for o in outcomes] == [[], []]


async def test_detach_removes_the_relation_and_answers_its_values(world: World, pair: Pair) -> None:
    attached = await attach(world, pair, weight=5)

    [outcome] = await run(world.relations(), [envelope(relation_command("detach", pair.a, pair.b))])
    [missing] = await run(world.relations(), [envelope(relation_command("detach", pair.a, pair.b))])

    assert result_of(outcome)["props"] == {"weight": 5}
    assert result_of(outcome)["relation_id"] == attached["relation_id"]
    assert [e["event"] for e in events_of(outcome)] == ["relation.detached"]
    assert await world.relations_stored() == []
    assert code_of(missing) == 404
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

    assert [code_of(o) for o in outcomes] == [0, 0, 404, 0, 404]
    assert result_of(outcomes[1])["props"] == {"weight": 2, "visits": 2}
    assert result_of(outcomes[3])["props"] == {"weight": 2, "visits": 2}
    assert await world.relations_stored() == []


async def test_sides_are_found_by_the_import_path_s_matching(world: World, pair: Pair) -> None:
    body = relation_command("attach", pair.a, pair.b, weights={})
    body["profile_a"] = {"email": "ADA@example.com"}
    body["profile_b"] = {"matching": "email", "email": "shop@example.com"}

    [outcome] = await run(world.relations(), [envelope(body)])

    assert (result_of(outcome)["profile_a"], result_of(outcome)["profile_b"]) == (pair.a, pair.b)


async def test_a_side_refused_leaves_the_next_command_s_sides_as_they_are(
    world: World, pair: Pair
) -> None:
    by_city = {"matching": "custom", "field_name": "city"}
    nowhere = relation_command("attach", pair.a, pair.b, weights={})
    nowhere["profile_a"] = {**by_city, "field_value": "Nowhere"}
    oslo = relation_command("attach", pair.a, pair.b, weights={})
    oslo["profile_a"] = {**by_city, "field_value": "Oslo"}

    outcomes = await run(world.relations(), [envelope(nowhere), envelope(oslo)])

    assert [code_of(o) for o in outcomes] == [404, 0]
    assert ((await only(world)).profile_id_a, (await only(world)).profile_id_b) == (pair.a, pair.b)


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

    assert code_of(outcome) == code, result_of(outcome)
    assert mentions in result_of(outcome)["error_text"]
    assert events_of(outcome) == []
    assert await world.relations_stored() == []


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

    assert [code_of(o) for o in outcomes] == [0] * 7
    assert [result_of(o)["props"] for o in outcomes] == [
        {"weight": 1},
        {"weight": 3},
        {"weight": 7},
        {"weight": 3, "visits": 1},
        {"weight": 6, "visits": 1},
        {"weight": 6, "visits": 1},
        {"weight": 9},
    ]
    assert [events_of(o)[0]["event"] for o in outcomes] == [
        "relation.attached",
        "relation.changed",
        "relation.attached",
        "relation.changed",
        "relation.changed",
        "relation.detached",
        "relation.attached",
    ]
    by_a = {r.profile_id_a: r.props for r in await world.relations_stored()}
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


async def _stored_props(world: World) -> dict[str, Any] | None:
    relations = await world.relations_stored()
    if not relations:
        return None
    [relation] = relations
    return dict(relation.props)


@pytest.mark.parametrize("copies", [2, 3, 5])
@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_copies_in_one_batch_have_one_effect_and_one_set_of_events(
    world: World, pair: Pair, action: str, extra: dict[str, Any], copies: int
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)

    outcomes = await run(world.relations(), [envelope(body, "m1") for _ in range(copies)])

    first, rest = outcomes[0], outcomes[1:]
    assert code_of(first) == 0, result_of(first)
    assert isinstance(first, Answered)
    assert len(events_of(first)) == 1
    assert all(result_of(o) == result_of(first) for o in rest), "a copy gets the original answer"
    assert all(isinstance(o, Replayed) and events_of(o) == [] for o in rest)
    assert await _stored_props(world) == _expected_props(action)


@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_a_copy_in_a_later_batch_gets_the_same_answer(
    world: World, pair: Pair, action: str, extra: dict[str, Any]
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)

    [first] = await run(world.relations(), [envelope(body, "m1")])
    [again] = await run(world.relations(), [envelope(body, "m1")])

    assert code_of(first) == 0
    assert result_of(again) == result_of(first)
    assert isinstance(again, Replayed)
    assert events_of(again) == []
    assert await _stored_props(world) == _expected_props(action)


async def test_a_copy_an_earlier_owner_decided_but_never_answered_is_answered_once(
    world: World, pair: Pair
) -> None:
    """The earlier owner lost its partition after its write, before its answer went out."""
    body = relation_command("strengthen", pair.a, pair.b, weights={"weight": 2})
    [first] = await world.relations().process([envelope(body, "m1")])

    [copy] = await run(world.relations(), [envelope(body, "m1")])

    assert isinstance(copy, Answered), "its answer may never have been sent: sent now"
    assert result_of(copy) == result_of(first)
    assert events_of(copy) == events_of(first)
    [later] = await run(world.relations(), [envelope(body, "m1")])
    assert isinstance(later, Replayed)
    assert result_of(later) == result_of(first)
    assert (await only(world)).props == {"weight": 2}


@pytest.mark.parametrize("after_landing", [True, False])
@pytest.mark.parametrize(("action", "extra"), DUPLICATED)
async def test_a_crash_around_the_write_is_finished_by_the_next_owner_once(
    world: World, pair: Pair, action: str, extra: dict[str, Any], after_landing: bool
) -> None:
    await _before(world, pair, action)
    body = relation_command(action, pair.a, pair.b, **extra)
    crashing = CrashingWrites(world.ports().relations, "relations", after_landing=after_landing)
    with pytest.raises(WorkerDied):
        await world.relations(crashing).process([envelope(body, "m1")])

    outcomes = await run(world.relations(), [envelope(body, "m1")] * 2)

    answer = outcomes[0]
    assert code_of(answer) == 0, result_of(answer)
    assert result_of(answer)["action"] == action
    assert result_of(answer)["created"] is (action == "attach")
    assert isinstance(answer, Answered)
    assert len(events_of(answer)) == 1
    assert result_of(outcomes[1]) == result_of(answer)
    assert events_of(outcomes[1]) == []
    assert await _stored_props(world) == _expected_props(action)
    [again] = await run(world.relations(), [envelope(body, "m1")])
    assert isinstance(again, Replayed)
    assert result_of(again) == result_of(answer)
