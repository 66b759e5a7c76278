"""`QueryProcessor` on the real store: get, get_counter, list and single, paging, and
refusals (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import PARTNERS_TOKEN, READ_TOKEN, TOKEN
from tests.unit.harness import World, envelope, events_of, relation_command, result_of, run
from worker.domain.envelope import Outcome, Refused
from worker.domain.shared.identity import profile_xxh


@dataclass(frozen=True)
class Network:
    a: str
    """The customer every relation of type 500 points at."""
    partners: list[str]
    """Partners, in the order of their relations' ids."""
    relation_ids: dict[str, int]


async def _network(world: World) -> Network:
    """Customer A with four partners (type 500) and a family member (type 501), and a relation
    between two others."""
    a = await world.profile_id("ada@example.com")
    partners = [await world.profile_id(f"shop{n}@example.com", db_id=11) for n in range(4)]
    cousin = await world.profile_id("cousin@example.com")
    bodies = [
        relation_command("attach", a, partners[0], weights={"weight": 3, "active": True}),
        relation_command("attach", a, partners[1], weights={"weight": 7.5}, priority=90),
        relation_command("attach", a, partners[2], weights={"visits": 4}),
        relation_command(
            "attach", a, partners[3], weights={"weight": -1, "active": False}, priority=10
        ),
        relation_command("attach", cousin, a, rel_id=501, weights={"closeness": 2}, priority=70),
        relation_command("attach", cousin, partners[0], weights={"weight": 100}, priority=60),
    ]
    outcomes = await run(world.relations(), [envelope(body) for body in bodies])
    ids = [result_of(o)["relation_id"] for o in outcomes]
    names = ["p0", "p1", "p2", "p3", "family", "elsewhere"]
    return Network(a, partners, dict(zip(names, ids, strict=True)))


async def ask(world: World, body: dict[str, Any], **extra: Any) -> Outcome:
    extra.setdefault("reply_to", "amq.rabbitmq.reply-to")
    sent = {key: value for key, value in {"token": READ_TOKEN, **body}.items() if value is not None}
    [outcome] = await run(world.queries(), [envelope(sent, **extra)])
    return outcome


async def test_get_pages_the_relations_of_the_a_profile(world: World) -> None:
    net = await _network(world)
    query = {"method": "get", "account_id": 1, "rel_id": 500, "profile_id": net.a, "limit": 3}

    first = await ask(world, query, message_id="q1", correlation_id="c1")
    second = await ask(world, {**query, "cursor": result_of(first)["next_cursor"]})

    assert result_of(first)["error"] == 0
    assert result_of(first)["error_text"] == "Successful operation"
    assert (result_of(first)["message_id"], result_of(first)["correlation_id"]) == ("q1", "c1")
    assert result_of(first)["total_count"] == result_of(second)["total_count"] == 4
    ids = [item["relation_id"] for item in result_of(first)["data"] + result_of(second)["data"]]
    assert ids == sorted(net.relation_ids[p] for p in ("p0", "p1", "p2", "p3"))
    assert result_of(second)["next_cursor"] is None
    item = result_of(first)["data"][0]
    assert item == {
        "relation_id": net.relation_ids["p0"],
        "rel_id": 500,
        "profile_id_a": net.a,
        "xxh_a": profile_xxh(net.a),
        "profile_id_b": net.partners[0],
        "xxh_b": profile_xxh(net.partners[0]),
        "db_a": 10,
        "db_b": 11,
        "props": {"weight": {"value": 3}, "active": {"value": True}},
        "relation_to_a": None,
        "relation_to_b": None,
        "priority": 50,
    }
    assert events_of(first) == []


async def test_get_addresses_the_a_profile_by_its_matching_keys(world: World) -> None:
    net = await _network(world)
    query = {"method": "get", "account_id": 1, "rel_id": 500}

    outcome = await ask(world, {**query, "matching": "email", "email": "ADA@example.com"})

    assert result_of(outcome)["total_count"] == 4
    assert {item["profile_id_a"] for item in result_of(outcome)["data"]} == {net.a}


async def test_get_counter_sums_and_ranks_each_property(world: World) -> None:
    net = await _network(world)
    query = {"method": "get_counter", "account_id": 1, "rel_id": 500, "profile_id": net.a}

    outcome = await ask(world, {**query, "top_n": 2})

    data = result_of(outcome)["data"]
    assert (data["profile_id"], data["profile_xxh"], data["total"]) == (
        net.a,
        profile_xxh(net.a),
        4,
    )
    assert data["props"]["weight"] == {
        "total": 3,
        "sum": pytest.approx(9.5),
        "top": [
            {"profile_id": net.partners[1], "value": 7.5},
            {"profile_id": net.partners[0], "value": 3},
        ],
    }
    assert data["props"]["visits"] == {
        "total": 1,
        "sum": 4,
        "top": [{"profile_id": net.partners[2], "value": 4}],
    }
    assert data["props"]["active"] == {"total": 2, "sum": None, "top": None}


async def test_get_counter_of_a_profile_without_relations(world: World) -> None:
    await _network(world)
    lonely = await world.profile_id("lonely@example.com")
    query = {"method": "get_counter", "account_id": 1, "rel_id": 500, "profile_id": lonely}

    data = result_of(await ask(world, query))["data"]

    assert data["total"] == 0
    assert data["props"]["weight"] == {"total": 0, "sum": 0, "top": []}


async def test_list_spans_both_sides_by_priority_then_id(world: World) -> None:
    net = await _network(world)
    query = {"method": "list", "account_id": 1, "contact": net.a, "limit": 2}

    pages = [await ask(world, query)]
    while result_of(pages[-1])["next_cursor"] is not None:
        pages.append(await ask(world, {**query, "cursor": result_of(pages[-1])["next_cursor"]}))

    ids = [item["relation_id"] for page in pages for item in result_of(page)["data"]]
    r = net.relation_ids
    assert ids == [r["p1"], r["family"], r["p0"], r["p2"], r["p3"]]
    assert [result_of(page)["total_count"] for page in pages] == [5, 5, 5]
    only_family = await ask(world, {**query, "rel_id": 501})
    assert [item["relation_id"] for item in result_of(only_family)["data"]] == [r["family"]]


async def test_single_reads_one_relation(world: World) -> None:
    net = await _network(world)

    outcome = await ask(
        world, {"method": "single", "account_id": 1, "relation_id": net.relation_ids["family"]}
    )

    assert result_of(outcome)["data"]["props"] == {"closeness": {"value": 2}}
    assert result_of(outcome)["data"]["priority"] == 70


async def test_a_query_without_reply_to_is_dead_lettered(world: World) -> None:
    net = await _network(world)
    query = {"method": "single", "account_id": 1, "relation_id": net.relation_ids["p0"]}

    outcome = await ask(world, query, reply_to=None)

    assert isinstance(outcome, Refused)
    assert outcome.dead_letter
    assert "reply_to" in outcome.error.text


async def test_an_unparsable_query_is_answered_and_dead_lettered(world: World) -> None:
    [outcome] = await run(world.queries(), [envelope(b"{not json", reply_to="amq.gen-caller")])

    assert isinstance(outcome, Refused)
    assert outcome.dead_letter, "SPEC §3: a body that cannot be parsed is copied to .dead"
    assert result_of(outcome)["error"] == 400


@pytest.mark.parametrize(
    ("query", "code", "mentions"),
    [
        ({"method": "get", "rel_id": 500, "cursor": "x"}, 400, "cursor"),
        ({"method": "get", "rel_id": 500, "limit": 1001}, 400, "limit"),
        ({"method": "get"}, 400, "rel_id"),
        ({"method": "get", "rel_id": 500, "profile_id": "nope"}, 400, "profile_id"),
        ({"method": "list", "contact": "a" * 23}, 400, "contact"),
        ({"method": "teleport"}, 400, "method"),
        ({"method": "get", "rel_id": 500, "token": None}, 401, "token"),
        ({"method": "get", "rel_id": 500, "token": "not-a-token-at-all-0000"}, 403, "token"),
        ({"method": "get", "rel_id": 500, "token": PARTNERS_TOKEN}, 403, "database 10"),
        ({"method": "list", "token": PARTNERS_TOKEN}, 403, "database 10"),
        ({"method": "get", "rel_id": 500, "account_id": 9}, 404, "account 9"),
        ({"method": "get", "rel_id": 600}, 404, "600"),
        ({"method": "get", "rel_id": 500, "profile_id": "0" * 24}, 404, "profile"),
        ({"method": "list", "contact": "0" * 24}, 404, "profile"),
        ({"method": "single", "relation_id": 99_999}, 404, "99999"),
    ],
)
async def test_refusals(world: World, query: dict[str, Any], code: int, mentions: str) -> None:
    net = await _network(world)
    body = {"account_id": 1, "profile_id": net.a, "contact": net.a, "feedback_id": "fb", **query}

    outcome = await ask(world, body, message_id="q1")

    assert result_of(outcome)["error"] == code, result_of(outcome)
    assert mentions in result_of(outcome)["error_text"]
    assert result_of(outcome)["message_id"] == "q1"
    assert result_of(outcome)["feedback_id"] == "fb"
    assert "data" not in result_of(outcome)


async def test_an_unparsable_query_is_answered_with_400(world: World) -> None:
    [outcome] = await run(world.queries(), [envelope(b"{nope", reply_to="caller")])

    assert result_of(outcome)["error"] == 400


async def test_a_batch_of_queries_is_answered_in_order(world: World) -> None:
    net = await _network(world)
    bodies = [
        {"method": "single", "account_id": 1, "relation_id": relation_id, "token": TOKEN}
        for relation_id in net.relation_ids.values()
    ]

    outcomes = await run(world.queries(), [envelope(b, reply_to="caller") for b in bodies])

    answered = [result_of(o)["data"]["relation_id"] for o in outcomes]
    assert answered == list(net.relation_ids.values())
