"""Wire fuzzing against a running worker: hostile bodies are answered 4xx (or dead-lettered
when they cannot be answered), the worker neither crashes nor stalls, and nothing is written.

The minimal bodies the first probes found failing (each was a finding, now fixed): integers
beyond 64 bits, deep nesting, cursors beyond 64 bits, and property bytes that are not UTF-8.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from tests.fuzz import bodies
from tests.integration import conftest as integration
from tests.integration.conftest import TOKEN, ask_relation, command, new_profile
from tests.support import LIVE
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.settings import Settings

pytestmark = pytest.mark.integration

# The integration fixtures, for tests outside tests/integration (a real broker and database,
# names unique per test, a worker running in this process).
settings = integration.settings
store = integration.store
mongo = integration.mongo
broker = integration.broker
start_worker = integration.start_worker
worker = integration.worker
client = integration.client

BEYOND_64_BITS = b"1180591620717411303425"
"""2**70 + 1: orjson reads integers of 2**64 and beyond as floats, losing digits."""


def import_body(data: bytes, email: str = "fuzz@example.com") -> bytes:
    """An import command of account 1, database 10, whose `data` is the raw JSON `data`."""
    head = {"account_id": 1, "db_id": 10, "email": email, "token": TOKEN}
    return orjson.dumps(head)[:-1] + b',"data":' + data + b"}"


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


async def answer(client: CommandClient, queue: str, body: bytes) -> dict[str, Any]:
    await client.send(queue, body)
    return dict(await client.reply(timeout=30))


async def relation(client: CommandClient, settings: Settings) -> tuple[str, str, int]:
    """Profile A (database 10), profile B (database 11), and a relation between them."""
    a = await new_profile(client, settings, "seed-a@example.com")
    b = await new_profile(client, settings, "seed-b@example.com", db_id=11)
    attached = await ask_relation(
        client,
        settings,
        {
            "action": "attach",
            "account_id": 1,
            "rel_id": 500,
            "token": TOKEN,
            "profile_a": {"profile_id": a},
            "profile_b": {"profile_id": b},
            "weights": {"visits": 1},
        },
    )
    assert attached["error"] == 0, attached
    return a, b, int(attached["relation_id"])


BIG_INT_DATA = {
    "object field": b'{"address": {"n": ' + BEYOND_64_BITS + b"}}",
    "float field": b'{"score": ' + BEYOND_64_BITS + b"}",
    "string field": b'{"city": ' + BEYOND_64_BITS + b"}",
}


@pytest.mark.parametrize("data", BIG_INT_DATA.values(), ids=list(BIG_INT_DATA))
async def test_integer_beyond_64_bits_in_a_field_is_refused(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker, data: bytes
) -> None:
    result = await answer(client, settings.import_queue, import_body(data))
    assert result["error"] == 400, result
    assert await mongo.profiles.count_documents({}) == 0


async def test_integer_beyond_64_bits_in_weights_is_refused(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    _, _, relation_id = await relation(client, settings)
    head = {"action": "strengthen", "account_id": 1, "relation_id": relation_id, "token": TOKEN}
    body = orjson.dumps(head)[:-1] + b',"weights":{"weight":' + BEYOND_64_BITS + b"}}"
    result = await answer(client, settings.relations_queue, body)
    assert result["error"] == 400, result
    stored = await mongo.relations.find_one({"_id": relation_id})
    assert stored is not None
    assert "weight" not in stored["props"], stored


BEYOND_INT64 = {
    # orjson reads 19-digit literals below -2**63 as floats: -2**63 is stored instead
    "int field below int64": b'{"age": -9223372036854775809}',
    # 2**63 + 1 is read as an int and turned into the nearest float, 2**63
    "float field beyond int64": b'{"score": 9223372036854775809}',
    "float field below int64": b'{"score": -9223372036854775809}',
}


@pytest.mark.parametrize("data", BEYOND_INT64.values(), ids=list(BEYOND_INT64))
async def test_integer_outside_int64_in_a_field_is_refused(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker, data: bytes
) -> None:
    result = await answer(client, settings.import_queue, import_body(data))
    assert result["error"] == 400, result
    assert await mongo.profiles.count_documents({}) == 0


async def test_integer_outside_int64_in_weights_is_refused(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker
) -> None:
    _, _, relation_id = await relation(client, settings)
    head = {"action": "strengthen", "account_id": 1, "relation_id": relation_id, "token": TOKEN}
    body = orjson.dumps(head)[:-1] + b',"weights":{"weight":9223372036854775809}}'
    result = await answer(client, settings.relations_queue, body)
    assert result["error"] == 400, result
    stored = await mongo.relations.find_one({"_id": relation_id})
    assert stored is not None
    assert "weight" not in stored["props"], stored


async def test_a_burst_of_commands_on_one_profile_is_answered_4xx(
    client: CommandClient, settings: Settings, worker: Worker
) -> None:
    body = import_body(b'{"age": "abc"}', email="burst@example.com")
    await client.send_many(settings.import_queue, ((None, body) for _ in range(100)))
    codes = Counter(reply["error"] for reply in await client.replies(100, timeout=60))
    assert codes == {400: 100}


DEEP_BODIES: dict[str, bytes] = {
    # check_keys recurses once per level: RecursionError, retried, then 500
    "object field 990 deep": import_body(b'{"address": ' + nested(990) + b"}"),
    # MongoDB refuses documents nested over 100 levels (mongo-java-server stores them)
    "object field 400 deep": import_body(b'{"address": ' + nested(400) + b"}"),
    # the refusal's text takes repr() of the value: RecursionError, retried, then 500
    "custom field_value 950 deep": (
        orjson.dumps(
            {
                "account_id": 1,
                "db_id": 10,
                "matching": "custom",
                "field_name": "loyalty_id",
                "token": TOKEN,
                "data": {"age": 1},
            }
        )[:-1]
        + b',"field_value":'
        + b"[" * 950
        + b"]" * 950
        + b"}"
    ),
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=list(DEEP_BODIES))
async def test_deeply_nested_value_is_refused(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    worker: Worker,
    body: bytes,
) -> None:
    result = await answer(client, settings.import_queue, body)
    assert 400 <= result["error"] < 500, result
    assert await mongo.profiles.count_documents({}) == 0


@pytest.mark.parametrize(
    ("method", "cursor"), [("get", "99999999999999999999"), ("list", "1:99999999999999999999")]
)
async def test_cursor_beyond_64_bits_is_refused(
    client: CommandClient, settings: Settings, worker: Worker, method: str, cursor: str
) -> None:
    a, _, _ = await relation(client, settings)
    query: dict[str, Any] = {"method": method, "account_id": 1, "token": TOKEN, "cursor": cursor}
    query.update({"rel_id": 500, "profile_id": a} if method == "get" else {"contact": a})
    result = await answer(client, settings.relations_query_queue, orjson.dumps(query))
    assert result["error"] == 400, result


@pytest.fixture
def raw_short_strings() -> Iterator[None]:
    """Let this process publish `bytes` as an AMQP short string, as they are: a producer
    written with another client (a Go string, say) can send any bytes there."""
    with bodies.raw_short_strings():
        yield


@pytest.mark.parametrize("prop", ["content_type", "content_encoding"])
async def test_invalid_utf8_in_a_property_does_not_stall_the_worker(
    client: CommandClient,
    settings: Settings,
    worker: Worker,
    raw_short_strings: None,
    prop: str,
) -> None:
    poison = aio_pika.Message(
        orjson.dumps(command()),
        correlation_id="poison",
        reply_to=client.reply_queue,
        **{prop: b"\xff\xfe"},  # type: ignore[arg-type]
    )
    await client.channel.default_exchange.publish(poison, routing_key=settings.import_queue)
    after = {"action": "detach", "account_id": 1, "relation_id": 1, "token": TOKEN}
    await client.send(settings.relations_queue, after, message_id="after")
    answered: dict[str | None, int] = {}
    async with asyncio.timeout(8):
        while "after" not in answered:
            reply = await client.reply(timeout=8)
            answered[reply.correlation_id] = reply["error"]
    assert answered["after"] == 404


FUZZ_COUNT = int(os.environ.get("PW_FUZZ_COUNT", "200"))
"""Generated bodies per queue; by hand, `bench/fuzz.py` sends 10 000 per queue."""
FUZZ_SEED = int(os.environ.get("PW_FUZZ_SEED", "20261124"))


class Collected:
    """Answers by correlation id, and the correlation ids copied to a `<queue>.dead`."""

    def __init__(self) -> None:
        self.answers: dict[str | None, int] = {}
        self.texts: dict[str | None, str] = {}
        self.dead: set[str | None] = set()

    async def on_dead(self, message: AbstractIncomingMessage) -> None:
        self.dead.add(message.correlation_id)

    async def until_covered(self, client: CommandClient, ids: set[str], timeout: float) -> None:
        """Read answers until every id is answered or dead-lettered, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not ids <= self.answers.keys() | self.dead:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                reply = await client.reply(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            self.answers[reply.correlation_id] = int(reply["error"])
            self.texts[reply.correlation_id] = str(reply.get("error_text"))


async def test_generated_bodies_are_refused_and_write_nothing(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    broker: aio_pika.abc.AbstractChannel,
    worker: Worker,
    raw_short_strings: None,
) -> None:
    queues = {
        "database_import": settings.import_queue,
        "relations": settings.relations_queue,
        "relations_query": settings.relations_query_queue,
    }
    collected = Collected()
    for queue in queues.values():
        dead = await broker.get_queue(f"{queue}.dead")
        await dead.consume(collected.on_dead, no_ack=True)
    sent: dict[str, tuple[str, bodies.Case]] = {}
    for kind, queue in queues.items():
        cases = bodies.generate(kind, FUZZ_COUNT, FUZZ_SEED, TOKEN)
        published = await bodies.publish_all(client.channel, queue, cases, client.reply_queue)
        sent.update({cid: (kind, case) for cid, case in published.items()})

    await collected.until_covered(client, set(sent), timeout=30 + 0.05 * len(sent))

    lost = [(sent[cid][0], sent[cid][1].family) for cid in sent.keys() - collected.answers.keys()
            if cid not in collected.dead]  # fmt: skip
    assert not lost, f"neither answered nor dead-lettered: {Counter(lost)}"
    bad = not_4xx(sent, collected.answers)
    assert bad == {}, {key: collected.texts[key.rsplit("/", 1)[1]] for key in bad}
    assert await mongo.profiles.count_documents({}) == 0
    assert await mongo.relations.count_documents(LIVE) == 0

    # no stall: each queue still answers a valid command, after every hostile one
    probes = {
        await client.send(settings.import_queue, command("after@example.com")): 0,
        await client.send(settings.relations_queue, DETACH_UNKNOWN): 404,
        await client.send(settings.relations_query_queue, SINGLE_UNKNOWN): 404,
    }
    await collected.until_covered(client, set(probes), timeout=30)
    assert {cid: collected.answers.get(cid) for cid in probes} == probes
    bad = not_4xx(sent, collected.answers)  # late answers too
    assert bad == {}, {key: collected.texts[key.rsplit("/", 1)[1]] for key in bad}


def not_4xx(
    sent: dict[str, tuple[str, bodies.Case]], answers: dict[str | None, int]
) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """The bodies answered with anything but 4xx, by queue, family and code."""
    return {
        f"{kind}/{case.family}/{answers[cid]}/{cid}": (case.body[:2_000], case.properties)
        for cid, (kind, case) in sent.items()
        if cid in answers and not 400 <= answers[cid] < 500
    }


DETACH_UNKNOWN = {"action": "detach", "account_id": 1, "relation_id": 1, "token": TOKEN}
SINGLE_UNKNOWN = {"method": "single", "account_id": 1, "relation_id": 1, "token": TOKEN}
