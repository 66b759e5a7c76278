"""Every refusal of the relation path is a 4xx result that writes nothing (SPEC §3, §5)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    OTHER_TOKEN,
    PARTNERS_TOKEN,
    READ_TOKEN,
    TOKEN,
    ask_relation,
    new_profile,
)
from tests.support import LIVE
from worker.runtime.client import CommandClient
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")

A = "profile_a"
B = "profile_b"
MISSING = "0123456789abcdef01234567"

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("undeclared property", {"weights": {"colour": 1}}, 400, "property 'colour'"),
    ("number given to a bool", {"weights": {"active": 1}}, 400, "'active' must be a bool"),
    ("bool given to a number", {"weights": {"weight": True}}, 400, "'weight' must be a number"),
    ("string weight", {"weights": {"weight": "3"}}, 400, "weights.weight"),
    ("dotted property", {"weights": {"a.b": 1}}, 400, "property 'a.b'"),
    ("priority above 100", {"priority": 101}, 400, "priority"),
    ("unknown action", {"action": "merge"}, 400, "action"),
    ("unknown parameter", {"colour": "red"}, 400, "unknown parameter 'colour'"),
    ("missing profile_b", {B: None}, 400, "profile_b"),
    ("attach by relation_id", {"relation_id": 1}, 400, "relation_id"),
    ("attach without weights", {"weights": None}, 400, "weights"),
    ("bad profile id", {A: {"profile_id": "nope"}}, 400, "profile_id"),
    ("missing token", {"token": None}, 401, "token"),
    ("read-only token", {"token": READ_TOKEN}, 403, "may not write"),
    ("token of another account", {"token": OTHER_TOKEN}, 403, "account 1"),
    ("token without database 10", {"token": PARTNERS_TOKEN}, 403, "database 10"),
    ("unknown account", {"account_id": 99}, 404, "account 99"),
    ("relation type of another account", {"rel_id": 600}, 404, "relation type 600"),
    ("over the account's size limit", {"feedback_id": "x" * 9_000}, 400, "account's limit"),
    ("unknown profile A", {A: {"profile_id": MISSING}}, 404, "database 10"),
    ("unknown profile B", {B: {"email": "nobody@example.com"}}, 404, "database 11"),
    ("ambiguous profile A", {A: {"matching": "phone", "phone": "+4790000000"}}, 409, "precise"),
]


@pytest.mark.parametrize(
    ("change", "code", "text"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_refusals(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    change: dict[str, Any],
    code: int,
    text: str,
) -> None:
    a = await new_profile(client, settings, "a@example.com", phones=["+47 900 00 000"])
    await new_profile(client, settings, "twin@example.com", phones=["+4790000000"])
    b = await new_profile(client, settings, "b@example.com", db_id=11)
    body: dict[str, Any] = {
        "action": "attach",
        "account_id": 1,
        "rel_id": 500,
        A: {"profile_id": a},
        B: {"profile_id": b},
        "weights": {"weight": 1},
        "token": TOKEN,
        "feedback_id": "fb",
    }
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    result = await ask_relation(client, settings, body)

    assert result["error"] == code, result
    assert text in result["error_text"]
    assert result["feedback_id"] == body["feedback_id"]
    assert await mongo.relations.count_documents(LIVE) == 0
    assert await mongo.relation_keys.count_documents({}) == 0


async def test_a_body_that_is_not_json_is_refused_and_dead_lettered(
    client: CommandClient, settings: Settings, broker: Any
) -> None:
    from tests.integration.conftest import first_message

    await client.send(settings.relations_queue, b"{not json")
    result = await client.reply()
    assert result["error"] == 400
    copy = await first_message(broker, f"{settings.relations_queue}.dead")
    assert copy.body == b"{not json"
