"""Relation commands through real queues (SPEC §5): the effect in the database, the result on
the queue and the events on the exchange."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    TOKEN,
    EventTap,
    ask_relation,
    new_id,
    new_profile,
)
from tests.support import LIVE
from worker.domain.shared.identity import profile_xxh
from worker.runtime.client import CommandClient
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")


def relation(action: str, a: str, b: str, **extra: Any) -> dict[str, Any]:
    """A command of type 500 (customer A in db 10, partner B in db 11) by profile ids."""
    return {
        "action": action,
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "token": TOKEN,
        **extra,
    }


async def next_relation_event(events: EventTap) -> dict[str, Any]:
    """The next `relation.*` event, skipping the `profile.*` events of the set-up."""
    event = await events.next()
    while not event["_routing_key"].startswith("relation."):
        event = await events.next()
    return event


@pytest.fixture
async def pair(client: CommandClient, settings: Settings) -> tuple[str, str]:
    a = await new_profile(client, settings, "customer@example.com")
    b = await new_profile(client, settings, "partner@example.com", db_id=11)
    return a, b


async def test_attach_stores_the_relation_answers_and_announces_it(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap, pair: tuple[str, str]
) -> None:
    a, b = pair
    body = relation(
        "attach",
        a,
        b,
        weights={"weight": 3, "active": True},
        relation_to_a="Client",
        relation_to_b="Supplier",
        priority=70,
        feedback_id="fb-1",
    )
    result = await ask_relation(client, settings, body, message_id=new_id())

    assert result["error"] == 0, result
    assert result["created"] is True
    assert result["props"] == {"weight": 3, "active": True}
    assert (result["profile_a"], result["profile_b"], result["feedback_id"]) == (a, b, "fb-1")
    doc = await mongo.relations.find_one({"_id": result["relation_id"]})
    assert doc["props"] == {"weight": 3, "active": True}
    assert (doc["profile_id_a"], doc["profile_id_b"], doc["priority"]) == (a, b, 70)
    assert (doc["relation_to_a"], doc["relation_to_b"]) == ("Client", "Supplier")
    event = await next_relation_event(events)
    assert event["_routing_key"] == "relation.attached"
    assert event["relation_id"] == result["relation_id"]
    assert event["props"] == {"weight": 3, "active": True}
    assert event["xxh_a"] == profile_xxh(a)
    assert event["xxh_b"] == profile_xxh(b)

    again = await ask_relation(client, settings, relation("attach", a, b, weights={"weight": 1}))
    assert again["error"] == 409
    assert (await mongo.relations.find_one({}))["props"]["weight"] == 3
    assert await mongo.relations.count_documents(LIVE) == 1


async def test_strengthen_adds_weakens_sets_bools_and_creates_when_absent(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    a, b = pair
    first = await ask_relation(
        client, settings, relation("strengthen", a, b, weights={"weight": 2})
    )
    assert (first["error"], first["created"], first["props"]) == (0, True, {"weight": 2})
    second = await ask_relation(
        client,
        settings,
        relation("strengthen", a, b, weights={"weight": -5, "visits": 1.5, "active": False}),
    )
    assert second["created"] is False
    assert second["relation_id"] == first["relation_id"]
    assert second["props"] == {"weight": -3, "visits": 1.5, "active": False}
    doc = await mongo.relations.find_one({})
    assert doc["props"] == {"weight": -3, "visits": 1.5, "active": False}
    assert await mongo.relations.count_documents(LIVE) == 1


async def test_edit_replaces_given_values_keeps_the_rest_and_changes_labels(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    a, b = pair
    await ask_relation(
        client, settings, relation("attach", a, b, weights={"weight": 3, "visits": 4})
    )
    result = await ask_relation(
        client,
        settings,
        relation("edit", a, b, weights={"weight": 10}, relation_to_b="Agent", priority=5),
    )
    assert result["props"] == {"weight": 10, "visits": 4}
    doc = await mongo.relations.find_one({})
    assert (doc["props"], doc["relation_to_b"], doc["priority"]) == (
        {"weight": 10, "visits": 4},
        "Agent",
        5,
    )


async def test_edit_creates_when_absent_with_the_default_priority(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    a, b = pair
    result = await ask_relation(client, settings, relation("edit", a, b, weights={"visits": 1}))
    assert (result["error"], result["created"]) == (0, True)
    assert (await mongo.relations.find_one({}))["priority"] == 50


async def test_detach_removes_the_relation_and_its_key(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap, pair: tuple[str, str]
) -> None:
    a, b = pair
    attached = await ask_relation(client, settings, relation("attach", a, b, weights={}))
    detached = await ask_relation(client, settings, relation("detach", a, b))

    assert (detached["error"], detached["relation_id"]) == (0, attached["relation_id"])
    assert await mongo.relations.count_documents(LIVE) == 0
    assert await mongo.relation_keys.count_documents({}) == 0
    assert (await next_relation_event(events))["_routing_key"] == "relation.attached"
    assert (await next_relation_event(events))["_routing_key"] == "relation.detached"
    missing = await ask_relation(client, settings, relation("detach", a, b))
    assert missing["error"] == 404
    reattached = await ask_relation(client, settings, relation("attach", a, b, weights={}))
    assert reattached["error"] == 0
    assert reattached["relation_id"] != attached["relation_id"], "ids are never reused"


async def test_commands_may_address_a_relation_by_relation_id(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    a, b = pair
    attached = await ask_relation(client, settings, relation("attach", a, b, weights={"weight": 1}))
    by_id = {"account_id": 1, "relation_id": attached["relation_id"], "token": TOKEN}
    strengthened = await ask_relation(
        client, settings, {**by_id, "action": "strengthen", "weights": {"weight": 4}}
    )
    assert strengthened["props"] == {"weight": 5}
    edited = await ask_relation(client, settings, {**by_id, "action": "edit", "priority": 99})
    assert (edited["error"], edited["profile_a"], edited["profile_b"]) == (0, a, b)
    assert (await mongo.relations.find_one({}))["priority"] == 99
    wrong_type = await ask_relation(client, settings, {**by_id, "action": "edit", "rel_id": 501})
    assert wrong_type["error"] == 404
    detached = await ask_relation(client, settings, {**by_id, "action": "detach"})
    assert detached["error"] == 0
    gone = await ask_relation(client, settings, {**by_id, "action": "strengthen", "weights": {}})
    assert gone["error"] == 404
    assert await mongo.relations.count_documents(LIVE) == 0


async def test_profiles_are_found_with_the_import_matching_modes(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    a, b = pair
    body = relation("attach", a, b, weights={"weight": 1})
    body["profile_a"] = {"email": " Customer@Example.com "}
    body["profile_b"] = {"matching": "email_profile", "email": "partner@example.com"}
    result = await ask_relation(client, settings, body)
    assert (result["error"], result["profile_a"], result["profile_b"]) == (0, a, b)

    family = await new_profile(client, settings, "child@example.com", loyalty_id="L-7")
    body = {
        "action": "strengthen",
        "account_id": 1,
        "rel_id": 501,
        "profile_a": {"matching": "custom", "field_name": "loyalty_id", "field_value": "L-7"},
        "profile_b": {"profile_id": a},
        "weights": {"closeness": 9},
        "token": TOKEN,
    }
    result = await ask_relation(client, settings, body)
    assert (result["error"], result["profile_a"], result["profile_b"]) == (0, family, a)
    assert await mongo.relations.count_documents({"rel_id": 501}) == 1


async def test_a_removed_relation_s_key_is_free_even_if_its_release_was_cut_short(
    client: CommandClient, settings: Settings, mongo: Any, pair: tuple[str, str]
) -> None:
    """A removal that crashed after its tombstone and before giving its key back leaves a claim
    of a removed relation: the next attach of that key takes it over with a new relation."""
    a, b = pair
    first = await ask_relation(client, settings, relation("attach", a, b, weights={}))
    detached = await ask_relation(client, settings, relation("detach", a, b))
    assert detached["error"] == 0
    key = (await mongo.relations.find_one({"_id": first["relation_id"]}))["key"]
    await mongo.relation_keys.insert_one({"_id": key, "relation_id": first["relation_id"]})

    again = await ask_relation(client, settings, relation("attach", a, b, weights={}))

    assert (again["error"], again["created"]) == (0, True)
    assert again["relation_id"] != first["relation_id"]
    claim = await mongo.relation_keys.find_one({"_id": key})
    assert claim["relation_id"] == again["relation_id"]
    assert await mongo.relations.count_documents(LIVE) == 1
