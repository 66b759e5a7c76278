"""Field semantics and side events of an import, checked in the stored profile."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from tests.integration.conftest import EventTap, ask, command
from worker.runtime.client import CommandClient
from worker.settings import Settings


async def send(client: CommandClient, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    result = await ask(client, settings, body)
    assert result["error"] == 0, result
    return result


async def test_functional_updates_and_typed_values(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap
) -> None:
    created = await send(
        client,
        settings,
        command(
            data={
                "age": "41",
                "score": "2.5",
                "vip": "true",
                "_bdate": "1815-12-10",
                "interests": "math, poetry, engines",
                "tier": "gold",
                "_regip": "10.0.0.7",
                "address": {"city": "London", "zip": "W1"},
            }
        ),
    )
    await send(
        client,
        settings,
        command(
            data={
                "age": {"action": "incr", "value": -1},
                "score": {"action": "incr", "value": 0.25},
                "interests": {"action": "delete", "value": ["poetry", "cooking"]},
                "tier": {"action": "unset"},
                "vip": {"action": "set", "value": False},
            }
        ),
    )
    doc = await mongo.profiles.find_one({"_id": ObjectId(created["profile_id"])})
    fields = doc["fields"]
    assert fields["age"] == 40
    assert fields["score"] == 2.75
    assert fields["vip"] is False
    assert fields["_bdate"] == datetime(1815, 12, 10, tzinfo=UTC)
    assert fields["interests"] == ["math", "engines"]
    assert "tier" not in fields
    assert fields["_regip"] == "10.0.0.7"
    assert fields["address"] == {"city": "London", "zip": "W1"}
    await events.next()
    updated = await events.next()
    assert updated["changed_fields"] == ["age", "interests", "score", "tier", "vip"]


async def test_trigger_and_workflow_requests(
    client: CommandClient, settings: Settings, events: EventTap
) -> None:
    await send(client, settings, command(trigger_id=7, workflow_id=9))
    seen = [await events.next() for _ in range(3)]
    assert [e["_routing_key"] for e in seen] == [
        "profile.created",
        "trigger.requested",
        "workflow.requested",
    ]
    assert (seen[1]["trigger_id"], seen[2]["workflow_id"]) == (7, 9)

    await send(client, settings, command(data={"city": "Paris"}, trigger_id=7, skip_triggers=True))
    after = await events.next()
    assert after["_routing_key"] == "profile.updated"
    await send(client, settings, command("marker@example.com"))
    assert (await events.next())["_routing_key"] == "profile.created", (
        "skip_triggers suppressed trigger.requested"
    )


async def test_an_update_that_changes_nothing_emits_no_event(
    client: CommandClient, settings: Settings, events: EventTap
) -> None:
    await send(client, settings, command(data={"city": "Oslo"}))
    await send(client, settings, command(data={"city": "Oslo"}))
    await send(client, settings, command("marker@example.com"))
    routing = [(await events.next())["_routing_key"] for _ in range(2)]
    assert routing == ["profile.created", "profile.created"]
