"""Bad input gets a 4xx result, is acked, writes nothing, and never stops the worker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.integration.conftest import (
    OTHER_TOKEN,
    PARTNERS_TOKEN,
    READ_TOKEN,
    command,
    first_message,
    new_id,
)
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.settings import Settings

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown field", command(data={"shoe_size": 44}), 400, "shoe_size"),
    ("bad int", command(data={"age": "forty"}), 400, "age"),
    ("bad enum", command(data={"tier": "platinum"}), 400, "tier"),
    ("operator key", command(data={"$set": {"x": 1}}), 400, "$set"),
    ("dotted key in object", command(data={"address": {"a.b": 1}}), 400, "a.b"),
    ("unknown parameter", command(colour="red"), 400, "colour"),
    ("ill-typed parameter", command(db_id="ten"), 400, "db_id"),
    ("missing account", {"db_id": 10, "email": "x@example.com", "data": {}}, 400, "account_id"),
    ("bad matching mode", command(matching="telepathy"), 400, "matching"),
    ("bad email", command("not-an-email"), 400, "email"),
    ("unset email", command(data={"email": {"action": "unset"}}), 400, "email"),
    ("no token", command(token=None), 401, "token"),
    ("foreign token", command(token=OTHER_TOKEN), 403, "account"),
    ("read-only token", command(token=READ_TOKEN), 403, "write"),
    ("token of another database", command(token=PARTNERS_TOKEN), 403, "database 10"),
    ("unknown database", command(db_id=99), 404, "99"),
    ("database of another account", command(db_id=20), 404, "20"),
    ("update only", command(update_only=True), 404, "not found"),
    ("profile id not found", command(matching="profile_id", profile_id="0" * 24), 404, "found"),
]


@pytest.mark.parametrize(("name", "body", "code", "mentions"), CASES, ids=[c[0] for c in CASES])
async def test_refused_with_code_naming_the_problem(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    worker: Worker,
    name: str,
    body: dict[str, Any],
    code: int,
    mentions: str,
) -> None:
    body = {key: value for key, value in body.items() if value is not None}
    await client.send(settings.import_queue, {**body, "feedback_id": name}, message_id=new_id())
    result = await client.reply()
    assert result["error"] == code, result
    assert mentions in result["error_text"]
    assert result["feedback_id"] == name
    assert await mongo.profiles.count_documents({}) == 0


async def test_broker_user_bound_to_the_account_needs_no_token(
    client: CommandClient, settings: Settings, worker: Worker
) -> None:
    body = {k: v for k, v in command().items() if k != "token"}
    await client.send(settings.import_queue, body, user_id="guest")
    assert (await client.reply())["error"] == 0


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_unparsable_body_is_answered_and_dead_lettered(
    client: CommandClient, settings: Settings, broker: Any, worker: Worker, body: bytes
) -> None:
    message_id = new_id()
    await client.send(settings.import_queue, body, message_id=message_id)
    result = await client.reply()
    assert result["error"] == 400
    assert result["message_id"] == message_id
    copy = await first_message(broker, f"{settings.import_queue}.dead")
    assert copy.body == body
    assert copy.message_id == message_id
    assert "x-dead-letter-reason" in (copy.headers or {})

    await client.send(settings.import_queue, command("after@example.com"))
    assert (await client.reply())["error"] == 0, "the worker still works after bad input"


async def test_oversize_message_is_refused(
    client: CommandClient, settings: Settings, worker: Worker
) -> None:
    huge = command(data={"city": "x" * (settings.max_message_bytes + 10)})
    await client.send(settings.import_queue, orjson.dumps(huge))
    result = await client.reply()
    assert result["error"] == 400
    assert "limit" in result["error_text"]
