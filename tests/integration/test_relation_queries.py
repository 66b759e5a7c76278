"""Relation queries over RPC (SPEC §6), on relations made through the relations queue."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    OTHER_TOKEN,
    PARTNERS_TOKEN,
    READ_TOKEN,
    TOKEN,
    ask_query,
    ask_relation,
    first_message,
    new_profile,
    seed_profile,
)
from worker.runtime.client import CommandClient
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")

# The documented examples of SPEC §1: profile id → XXH64 of its 24 characters.
SEED = {
    "669e6968ebf4ac52b623a997": "5af1023c84f66195",
    "6751b8f1c5e3db9bcb75befa": "879cebbb0e6b6723",
    "5c910f6bc484d023b1309bee": "54ec2d76ac22a964",
}


async def link(
    client: CommandClient, settings: Settings, a: str, b: str, **extra: Any
) -> dict[str, Any]:
    body = {
        "action": "attach",
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "weights": {},
        "token": TOKEN,
        **extra,
    }
    result = await ask_relation(client, settings, body)
    assert result["error"] == 0, result
    return result


def query(method: str, **extra: Any) -> dict[str, Any]:
    return {"method": method, "account_id": 1, "token": READ_TOKEN, **extra}


async def test_get_shows_the_seed_examples_with_their_hashes(
    client: CommandClient, settings: Settings, mongo: Any
) -> None:
    a, b1, b2 = SEED
    await seed_profile(mongo, a, 10)
    await seed_profile(mongo, b1, 11)
    await seed_profile(mongo, b2, 11)
    first = await link(
        client,
        settings,
        a,
        b1,
        weights={"weight": 2.5, "active": True},
        relation_to_a="Client",
        relation_to_b="Agent",
        priority=80,
    )
    await link(client, settings, a, b2)

    answer = await ask_query(client, settings, query("get", rel_id=500, profile_id=a))

    assert (answer["error"], answer["error_text"]) == (0, "Successful operation")
    assert answer["total_count"] == 2
    assert answer["next_cursor"] is None
    item = answer["data"][0]
    assert item == {
        "relation_id": first["relation_id"],
        "rel_id": 500,
        "profile_id_a": a,
        "xxh_a": SEED[a],
        "profile_id_b": b1,
        "xxh_b": SEED[b1],
        "db_a": 10,
        "db_b": 11,
        "props": {"weight": {"value": 2.5}, "active": {"value": True}},
        "relation_to_a": "Client",
        "relation_to_b": "Agent",
        "priority": 80,
    }
    assert answer["data"][1]["xxh_b"] == SEED[b2]


async def test_get_pages_with_a_cursor(
    client: CommandClient, settings: Settings, mongo: Any
) -> None:
    a = await new_profile(client, settings, "hub@example.com")
    partners = [
        await new_profile(client, settings, f"p{n}@example.com", db_id=11) for n in range(5)
    ]
    for b in partners:
        await link(client, settings, a, b)
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        extra: dict[str, Any] = {"cursor": cursor} if cursor else {}
        page = await ask_query(
            client, settings, query("get", rel_id=500, profile_id=a, limit=2, **extra)
        )
        assert page["total_count"] == 5
        seen += [item["profile_id_b"] for item in page["data"]]
        cursor = page["next_cursor"]
    assert cursor is None
    assert seen == partners, "every relation once, in creation order"
    by_email = await ask_query(
        client, settings, query("get", rel_id=500, matching="email", email="hub@example.com")
    )
    assert by_email["total_count"] == 5


async def test_get_counter_aggregates_numbers_and_leaves_bools_unsummed(
    client: CommandClient, settings: Settings
) -> None:
    a = await new_profile(client, settings, "counted@example.com")
    values = [5, 12, -1, 7]
    partners = []
    for n, value in enumerate(values):
        b = await new_profile(client, settings, f"c{n}@example.com", db_id=11)
        partners.append(b)
        await link(client, settings, a, b, weights={"weight": value, "active": n % 2 == 0})
    extra = await new_profile(client, settings, "unweighted@example.com", db_id=11)
    await link(client, settings, a, extra)

    answer = await ask_query(
        client, settings, query("get_counter", rel_id=500, profile_id=a, top_n=2)
    )

    data = answer["data"]
    assert answer["error"] == 0
    assert data["profile_id"] == a
    assert data["total"] == 5
    assert data["props"]["weight"] == {
        "total": 4,
        "sum": sum(values),
        "top": [
            {"profile_id": partners[1], "value": 12},
            {"profile_id": partners[3], "value": 7},
        ],
    }
    assert data["props"]["active"] == {"total": 4, "sum": None, "top": None}
    assert data["props"]["visits"] == {"total": 0, "sum": 0, "top": []}


async def test_list_shows_both_sides_by_priority_and_single_shows_one(
    client: CommandClient, settings: Settings
) -> None:
    a = await new_profile(client, settings, "middle@example.com")
    parent = await new_profile(client, settings, "parent@example.com")
    partner = await new_profile(client, settings, "shop@example.com", db_id=11)
    low = await link(client, settings, a, partner, priority=10)
    family = {
        "action": "attach",
        "account_id": 1,
        "rel_id": 501,
        "profile_a": {"profile_id": parent},
        "profile_b": {"profile_id": a},
        "weights": {"closeness": 1},
        "priority": 90,
        "token": TOKEN,
    }
    high = await ask_relation(client, settings, family)

    listed = await ask_query(client, settings, query("list", contact=a))
    assert [item["relation_id"] for item in listed["data"]] == [
        high["relation_id"],
        low["relation_id"],
    ]
    assert listed["total_count"] == 2
    only = await ask_query(client, settings, query("list", contact=a, rel_id=501, limit=1))
    assert [item["relation_id"] for item in only["data"]] == [high["relation_id"]]
    paged = await ask_query(client, settings, query("list", contact=a, limit=1))
    rest = await ask_query(
        client, settings, query("list", contact=a, limit=1, cursor=paged["next_cursor"])
    )
    assert [item["relation_id"] for item in rest["data"]] == [low["relation_id"]]

    single = await ask_query(client, settings, query("single", relation_id=low["relation_id"]))
    assert single["data"]["profile_id_b"] == partner
    assert single["data"]["priority"] == 10


QUERY_REFUSALS: list[tuple[str, dict[str, Any], int]] = [
    ("unknown relation", {"method": "single", "relation_id": 999_999}, 404),
    ("unknown profile", {"method": "get", "rel_id": 500, "profile_id": "0" * 24}, 404),
    ("unknown contact", {"method": "list", "contact": "0" * 24}, 404),
    ("unknown relation type", {"method": "get", "rel_id": 42, "profile_id": "0" * 24}, 404),
    ("token of another account", {"method": "list", "token": OTHER_TOKEN}, 403),
    ("token without database 10", {"method": "get", "token": PARTNERS_TOKEN}, 403),
    ("missing token", {"method": "get", "token": None}, 401),
    ("bad cursor", {"method": "get", "cursor": "x"}, 400),
    ("limit above 1000", {"method": "get", "limit": 1001}, 400),
    ("unknown method", {"method": "count"}, 400),
    ("get without rel_id", {"method": "get", "rel_id": None}, 400),
    ("over the account's size limit", {"method": "get", "feedback_id": "x" * 9_000}, 400),
]


@pytest.mark.parametrize(
    ("change", "code"),
    [case[1:] for case in QUERY_REFUSALS],
    ids=[case[0] for case in QUERY_REFUSALS],
)
async def test_query_refusals(
    client: CommandClient, settings: Settings, change: dict[str, Any], code: int
) -> None:
    a = await new_profile(client, settings, "asked@example.com")
    body = {**query("get", rel_id=500, profile_id=a, contact=a), **change}
    body = {key: value for key, value in body.items() if value is not None}
    answer = await ask_query(client, settings, body)
    assert answer["error"] == code, answer
    assert answer["error_text"]
    assert "data" not in answer


async def test_a_query_without_reply_to_is_dead_lettered_and_the_worker_goes_on(
    client: CommandClient, settings: Settings, broker: Any
) -> None:
    a = await new_profile(client, settings, "lonely@example.com")
    await client.send(settings.relations_query_queue, query("single", relation_id=1), reply=False)
    copy = await first_message(broker, f"{settings.relations_query_queue}.dead")
    assert b"single" in copy.body
    assert "reply_to" in str(copy.headers["x-dead-letter-reason"])
    answer = await ask_query(client, settings, query("get", rel_id=500, profile_id=a))
    assert (answer["error"], answer["total_count"]) == (0, 0)


async def test_a_bound_broker_user_may_query_without_a_token(
    client: CommandClient, settings: Settings
) -> None:
    a = await new_profile(client, settings, "bound@example.com")
    body = {"method": "get", "account_id": 1, "rel_id": 500, "profile_id": a}
    await client.send(settings.relations_query_queue, body, user_id="guest")
    answer = await client.reply()
    assert (answer["error"], answer["total_count"]) == (0, 0)
    await client.send(settings.relations_query_queue, body)
    assert (await client.reply())["error"] == 401
