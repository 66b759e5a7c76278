"""Every matching mode of SPEC §4.2, subscriptions (§4.4), the quick form and limits, through
real queues, asserting the stored profiles and the results."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from tests.integration.conftest import SMALL_TOKEN, TOKEN, EventTap, ask
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.settings import Settings

ADA: dict[str, Any] = {
    "email": "Ada@Example.com",
    "phones": ["+44 20 7946 0001"],
    "loyalty_id": "L-100",
    "city": "London",
    "interests": ["math", "poetry", "engines"],
    "subscriptions": [
        {"resource_id": 100, "channel": "email", "email": "ada.news@example.com"},
        {"resource_id": 101, "channel": "sms", "phone": "+44 7700 900001"},
        {"resource_id": 102, "channel": "push", "provider": "fcm", "subscription_id": "tok-1"},
    ],
}


def importing(**keys: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN, "data": {"age": 1}}
    body.update(keys)
    return body


@pytest.fixture
async def ada(client: CommandClient, settings: Settings, worker: Worker) -> str:
    created = await ask(
        client,
        settings,
        importing(
            email="ada@example.com",
            data=ADA,
        ),
    )
    assert created["error"] == 0, created
    assert created["created"] is True
    return str(created["profile_id"])


MODES: list[tuple[str, dict[str, Any]]] = [
    ("email", {"email": "ADA@example.com "}),
    ("email", {"email": "ada.news@example.com"}),
    ("email_profile", {"email": "ada@example.com"}),
    ("email_sub", {"email": "ada.news@example.com"}),
    ("email_sub", {"email": "ada.news@example.com", "resource_id": 100}),
    ("phone", {"phone": "+44 (20) 7946-0001"}),
    ("phone", {"phone": "+447700900001"}),
    ("phone_sub", {"phone": "+447700900001", "resource_id": 101}),
    ("email_phone", {"phone": "+442079460001"}),
    ("email_phone", {"email": "ada@example.com"}),
    ("email_phone_sub", {"email": "nobody@example.com", "phone": "+447700900001"}),
    ("custom", {"field_name": "loyalty_id", "field_value": "L-100"}),
    ("custom", {"field_name": "city", "field_value": "London"}),
    ("custom", {"field_name": "interests", "field_value": "poetry, math"}),
    ("push_sub", {"provider": "fcm", "subscription_id": "tok-1"}),
]


@pytest.mark.parametrize(
    ("mode", "keys"), MODES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(MODES)]
)
async def test_every_mode_finds_the_profile(
    client: CommandClient, settings: Settings, mongo: Any, ada: str, mode: str, keys: dict[str, Any]
) -> None:
    result = await ask(client, settings, importing(matching=mode, data={"age": 42}, **keys))
    assert result["error"] == 0, result
    assert result["created"] is False
    assert result["profile_id"] == ada
    assert result["matching_field"] == mode
    assert (await mongo.profiles.find_one({"_id": ObjectId(ada)}))["fields"]["age"] == 42
    assert await mongo.profiles.count_documents({}) == 1


async def test_matching_by_profile_id(
    client: CommandClient, settings: Settings, mongo: Any, ada: str
) -> None:
    result = await ask(client, settings, importing(matching="profile_id", profile_id=ada))
    assert (result["error"], result["profile_id"], result["created"]) == (0, ada, False)


NO_MATCH: list[tuple[str, dict[str, Any]]] = [
    ("email_sub", {"email": "ada.news@example.com", "resource_id": 103}),
    ("phone_sub", {"phone": "+442079460001"}),
    ("email_profile", {"email": "ada.news@example.com"}),
    ("custom", {"field_name": "interests", "field_value": "math, cooking"}),
    ("push_sub", {"provider": "apns", "subscription_id": "tok-1"}),
]


@pytest.mark.parametrize(("mode", "keys"), NO_MATCH, ids=[m for m, _ in NO_MATCH])
async def test_no_match_creates_and_update_only_refuses(
    client: CommandClient, settings: Settings, mongo: Any, ada: str, mode: str, keys: dict[str, Any]
) -> None:
    refused = await ask(client, settings, importing(matching=mode, update_only=True, **keys))
    assert refused["error"] == 404, refused
    assert await mongo.profiles.count_documents({}) == 1
    created = await ask(client, settings, importing(matching=mode, **keys))
    assert created["error"] == 0, created
    assert created["created"] is True
    assert created["profile_id"] != ada
    assert await mongo.profiles.count_documents({}) == 2


async def test_a_new_profile_gets_the_email_or_phone_it_was_matched_by(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    by_phone = await ask(client, settings, importing(matching="phone", phone="+1 555 0100"))
    doc = await mongo.profiles.find_one({"_id": ObjectId(by_phone["profile_id"])})
    assert doc["fields"]["phones"] == ["+15550100"]
    again = await ask(client, settings, importing(matching="phone", phone="+1-555-0100"))
    assert again["profile_id"] == by_phone["profile_id"]


async def test_several_matches_are_409_and_nothing_is_written(
    client: CommandClient, settings: Settings, mongo: Any, ada: str
) -> None:
    grace = await ask(
        client,
        settings,
        importing(
            email="grace@example.com",
            data={
                "city": "London",
                "subscriptions": [
                    {"resource_id": 103, "channel": "email", "email": "ada@example.com"}
                ],
            },
        ),
    )
    assert grace["error"] == 0, grace
    for keys in (
        {"matching": "custom", "field_name": "city", "field_value": "London"},
        {"matching": "email", "email": "ada@example.com"},
    ):
        result = await ask(client, settings, importing(data={"age": 99}, **keys))
        assert result["error"] == 409, result
        assert "matching not precise" in result["error_text"]
    assert await mongo.profiles.count_documents({"fields.age": 99}) == 0


async def test_subscriptions_are_updated_on_reimport_and_announced_once(
    client: CommandClient, settings: Settings, mongo: Any, ada: str, events: EventTap
) -> None:
    change = {
        "resource_id": 100,
        "channel": "email",
        "email": "ADA.NEWS@example.com",
        "status": "unsubscribed",
        "priority": 3,
        "cats": ["weekly"],
    }
    result = await ask(
        client, settings, importing(email="ada@example.com", data={"subscriptions": [change]})
    )
    assert result["error"] == 0, result
    doc = await mongo.profiles.find_one({"_id": ObjectId(ada)})
    subscriptions = {s["address"]: s for s in doc["subs"].values()}
    assert len(subscriptions) == 3
    news = subscriptions["ada.news@example.com"]
    assert (news["status"], news["priority"], news["cats"]) == ("unsubscribed", 3, ["weekly"])

    back = {**change, "status": "subscribed"}
    await ask(client, settings, importing(email="ada@example.com", data={"subscriptions": [back]}))
    await ask(client, settings, importing(data={"subscriptions": [back]}, email="ada@example.com"))
    marker = await ask(client, settings, importing(email="marker@example.com"))
    seen = [await events.next()]
    while seen[-1]["profile_id"] != marker["profile_id"]:
        seen.append(await events.next())
    subscribed = [e for e in seen if e["_routing_key"] == "profile.subscribed"]
    assert [(e["resource_id"], e["channel"]) for e in subscribed] == [(100, "email")]
    assert subscribed[0]["profile_id"] == ada


SUBSCRIPTION_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"resource_id": 999, "channel": "email", "email": "x@example.com"}, 404, "999"),
    ({"resource_id": 200, "channel": "email", "email": "x@example.com"}, 404, "200"),
    ({"resource_id": 100, "channel": "sms", "phone": "+15550100"}, 400, "channel"),
    ({"resource_id": 100, "channel": "email"}, 400, "email"),
    (
        {"resource_id": 100, "channel": "email", "email": "x@example.com", "colour": 1},
        400,
        "colour",
    ),
    (
        {"resource_id": 100, "channel": "email", "email": "x@e.com", "custom_fields": {"$x": 1}},
        400,
        "$x",
    ),
    ({"resource_id": 100, "channel": "email", "email": "ada.news@example.com"}, 435, "another"),
]


@pytest.mark.parametrize(("subscription", "code", "mentions"), SUBSCRIPTION_REFUSALS)
async def test_bad_subscriptions_are_refused(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    ada: str,
    subscription: dict[str, Any],
    code: int,
    mentions: str,
) -> None:
    result = await ask(
        client, settings, importing(email="bob@example.com", data={"subscriptions": [subscription]})
    )
    assert result["error"] == code, result
    assert mentions in result["error_text"]
    assert await mongo.profiles.count_documents({}) == 1


async def test_quick_form_with_resource_id_subscribes_the_email(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    result = await ask(
        client,
        settings,
        {
            "account_id": 1,
            "db_id": 10,
            "token": TOKEN,
            "email": "quick@example.com",
            "resource_id": 100,
            "_fname": "Quick",
            "city": "Oslo",
        },
    )
    assert result["error"] == 0, result
    doc = await mongo.profiles.find_one({"_id": ObjectId(result["profile_id"])})
    assert doc["fields"]["city"] == "Oslo"
    assert [s["address"] for s in doc["subs"].values()] == ["quick@example.com"]
    by_sub = await ask(client, settings, importing(matching="email_sub", email="quick@example.com"))
    assert by_sub["profile_id"] == result["profile_id"]


async def test_quick_form_matching_may_name_a_field(
    client: CommandClient, settings: Settings, worker: Worker
) -> None:
    quick = {"account_id": 1, "db_id": 10, "token": TOKEN, "matching": "loyalty_id"}
    first = await ask(client, settings, {**quick, "loyalty_id": "Q-1"})
    second = await ask(client, settings, {**quick, "loyalty_id": "Q-1", "city": "Rome"})
    assert first["matching_field"] == "custom"
    assert (second["created"], second["profile_id"]) == (False, first["profile_id"])


async def test_account_profile_limit_is_402_on_creation_only(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    def small(email: str) -> dict[str, Any]:
        return {
            "account_id": 3,
            "db_id": 30,
            "token": SMALL_TOKEN,
            "email": email,
            "data": {"_fname": "x"},
        }

    assert (await ask(client, settings, small("a@example.com")))["error"] == 0
    assert (await ask(client, settings, small("b@example.com")))["error"] == 0
    refused = await ask(client, settings, small("c@example.com"))
    assert refused["error"] == 402, refused
    assert (await ask(client, settings, small("a@example.com")))["error"] == 0
    assert await mongo.profiles.count_documents({"account_id": 3}) == 2
