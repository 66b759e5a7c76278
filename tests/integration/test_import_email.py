"""The email import path end to end: real queues in, MongoDB state and results out."""

from __future__ import annotations

from typing import Any

import orjson
from bson import ObjectId

from tests.integration.conftest import EventTap, command, first_message, new_id
from worker.domain.shared.identity import profile_xxh
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.settings import Settings


async def test_creates_then_updates_the_same_profile(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap
) -> None:
    first = new_id()
    await client.send(
        settings.import_queue,
        command(
            "Ada.Lovelace@Example.com",
            feedback_id="fb-1",
            data={"_fname": "Ada", "age": "36", "interests": "math, engines"},
        ),
        message_id=first,
    )
    created = await client.reply()
    assert created["error"] == 0, created
    assert created["error_text"] == ""
    assert created["created"] is True
    assert created["feedback_id"] == "fb-1"
    assert created["message_id"] == first
    assert created.correlation_id == first
    assert created["matching_field"] == "email"
    assert (created["db_id"], created["account_id"]) == (10, 1)
    profile_id = created["profile_id"]
    assert created["profile_xxh"] == profile_xxh(profile_id)

    await client.send(
        settings.import_queue,
        command(
            "  ada.lovelace@example.COM",
            data={
                "age": {"action": "incr", "value": 2},
                "interests": {"action": "add", "value": ["poetry"]},
            },
        ),
        message_id=new_id(),
    )
    updated = await client.reply()
    assert updated["error"] == 0, updated
    assert updated["created"] is False
    assert updated["profile_id"] == profile_id

    doc = await mongo.profiles.find_one({"_id": ObjectId(profile_id)})
    assert doc["fields"]["email"] == "Ada.Lovelace@Example.com"
    assert doc["fields"]["age"] == 38
    assert doc["fields"]["interests"] == ["math", "engines", "poetry"]
    assert await mongo.profiles.count_documents({}) == 1

    created_event = await events.next()
    updated_event = await events.next()
    assert created_event["_routing_key"] == "profile.created"
    assert created_event["profile_id"] == profile_id
    assert created_event["profile_xxh"] == profile_xxh(profile_id)
    assert created_event["message_id"] == first
    assert created_event["occurred_at"].endswith("Z")
    assert updated_event["_routing_key"] == "profile.updated"
    assert updated_event["changed_fields"] == ["age", "interests"]


async def test_without_reply_to_the_result_goes_to_the_result_queue(
    client: CommandClient, settings: Settings, broker: Any, worker: Worker
) -> None:
    message_id = new_id()
    await client.send(
        settings.import_queue, command("grace@example.com"), message_id=message_id, reply=False
    )
    message = await first_message(broker, settings.import_result_queue)
    result = orjson.loads(message.body)
    assert result["error"] == 0
    assert result["message_id"] == message_id
    assert message.correlation_id == message_id


async def test_a_batch_keeps_queue_order_per_profile(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    emails = [f"user{n}@example.com" for n in range(20)]
    bodies: list[tuple[str | None, dict[str, Any]]] = []
    for step in range(5):
        for email in emails:
            bodies.append(
                (
                    new_id(),
                    command(
                        email, data={"city": f"city-{step}", "age": {"action": "incr", "value": 1}}
                    ),
                )
            )
    await client.send_many(settings.import_queue, bodies)
    replies = await client.replies(len(bodies), timeout=60)
    assert all(reply["error"] == 0 for reply in replies), replies
    assert sum(1 for reply in replies if reply["created"]) == len(emails)
    docs = await mongo.profiles.find({}).to_list()
    assert len(docs) == len(emails)
    assert {doc["fields"]["city"] for doc in docs} == {"city-4"}
    assert {doc["fields"]["age"] for doc in docs} == {5}


async def test_unique_field_of_another_profile_is_refused_with_435(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    await client.send(settings.import_queue, command("a@example.com", data={"loyalty_id": "L-1"}))
    assert (await client.reply())["error"] == 0
    await client.send(settings.import_queue, command("b@example.com", data={"loyalty_id": "L-1"}))
    refused = await client.reply()
    assert refused["error"] == 435, refused
    assert "loyalty_id" in refused["error_text"]
    assert await mongo.profiles.count_documents({}) == 1
    await client.send(
        settings.import_queue, command("a@example.com", data={"email": "c@example.com"})
    )
    moved = await client.reply()
    assert moved["error"] == 0, moved
    await client.send(settings.import_queue, command("a@example.com", data={"city": "Paris"}))
    fresh = await client.reply()
    assert fresh["created"] is True, "the old email was released and matches nobody now"
    assert fresh["profile_id"] != moved["profile_id"]
