"""Naive per-message baseline: what one command at a time costs on the same broker and database.

    python -m bench.naive [--messages N] [--mongodb-url URL]

The consumer a first version of the worker would be: prefetch 1, and for each import command
(the mix of `bench.run.commands`): decode the JSON, find the profile by email or by the custom
field `loyalty_id` (one read, on a unique index scoped by `db_id`), update it (`$set`/`$inc`)
or insert it, publish the result and await its publisher confirm, then ack that message. No
batching, no pipelining. It also leaves out what the worker does besides (authorization against
the catalog, dedup inbox, exactly-once markers, revisions, claims, events, coercion), so each of
its commands does less work than the worker's: the worker/naive ratio is what batching buys
net of those extras.

`naive_rate` is what `bench.run` calls; the rate counts from the first delivery to the last ack.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from bench.mix import commands
from worker.runtime.client import CommandClient
from worker.settings import Settings

Profiles = AsyncCollection[dict[str, Any]]


def profile_filter(body: dict[str, Any]) -> dict[str, Any]:
    """The look-up of one command: email (lower-cased) or the custom field, within `db_id`."""
    if body.get("matching") == "custom":
        return {"db_id": body["db_id"], f"fields.{body['field_name']}": body["field_value"]}
    return {"db_id": body["db_id"], "email": str(body["email"]).lower()}


def profile_update(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`{"action": "incr"}` values become `$inc`, everything else `$set`."""
    inc: dict[str, Any] = {}
    set_: dict[str, Any] = {"updated_at": now}
    for name, value in data.items():
        if isinstance(value, dict) and value.get("action") == "incr":
            inc[f"fields.{name}"] = value["value"]
        else:
            set_[f"fields.{name}"] = value
    return {"$set": set_, **({"$inc": inc} if inc else {})}


async def apply(profiles: Profiles, body: dict[str, Any]) -> dict[str, Any]:
    """One command against the database: one read, then one update or one insert."""
    now = datetime.now(UTC)
    data: dict[str, Any] = body.get("data") or {}
    found = await profiles.find_one(profile_filter(body), {"_id": 1})
    if found is not None:
        await profiles.update_one({"_id": found["_id"]}, profile_update(data, now))
        return {"profile_id": str(found["_id"]), "created": False}
    if body.get("matching") == "custom":
        return {"error": 404, "error_text": "profile not found"}
    profile_id = ObjectId()
    await profiles.insert_one(
        {
            "_id": profile_id,
            "db_id": body["db_id"],
            "account_id": body["account_id"],
            "email": str(body["email"]).lower(),
            "fields": {k: v["value"] if isinstance(v, dict) else v for k, v in data.items()},
            "created_at": now,
            "updated_at": now,
        }
    )
    return {"profile_id": str(profile_id), "created": True}


async def handle(
    message: AbstractIncomingMessage, profiles: Profiles, channel: AbstractChannel, results: str
) -> bool:
    """Decode, apply, publish the result (confirm awaited), ack; True when it succeeded."""
    body = orjson.loads(message.body)
    outcome = {"error": 0, "error_text": "", **await apply(profiles, body)}
    error: int = outcome["error"]
    result = {"message_id": message.message_id, "db_id": body["db_id"], **outcome}
    await channel.default_exchange.publish(
        Message(
            orjson.dumps(result),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            correlation_id=message.correlation_id,
        ),
        routing_key=results,
    )
    await message.ack()
    return error == 0


async def naive_rate(settings: Settings, mongodb_url: str, count: int) -> float:
    """Queue `count` commands of the bench mix, consume them one by one; commands/s.

    Uses queues and a database of its own (derived from the settings' names), removed after.
    """
    suffix = uuid.uuid4().hex[:8]
    queue_name, results_name = f"bench_naive.{suffix}", f"bench_naive_result.{suffix}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    database = client[f"{settings.mongodb_database}_naive_{suffix}"]
    profiles: Profiles = database["profiles"]
    for key in ("email", "fields.loyalty_id"):
        await profiles.create_index([("db_id", ASCENDING), (key, ASCENDING)], unique=True)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=1)
        arguments: dict[str, Any] = {"x-queue-type": settings.queue_type}
        queue = await channel.declare_queue(queue_name, durable=True, arguments=arguments)
        await channel.declare_queue(results_name, durable=True, arguments=arguments)
        async with CommandClient(settings.amqp_url) as producer:
            await producer.send_many(queue_name, commands(count), reply=False)
        done, failed, started = 0, 0, 0.0
        async with queue.iterator() as stream:
            async for message in stream:
                if done == 0:
                    started = time.perf_counter()
                failed += not await handle(message, profiles, channel, results_name)
                done += 1
                if done == count:
                    break
        rate = count / (time.perf_counter() - started)
        await channel.queue_delete(queue_name)
        await channel.queue_delete(results_name)
    finally:
        await connection.close()
        await client.drop_database(database.name)
        await client.close()
    if failed:
        raise SystemExit(f"naive baseline: {failed} commands failed")
    return rate


async def main(count: int, mongodb_url: str | None) -> None:
    settings = Settings(mongodb_database=f"bench_{uuid.uuid4().hex[:8]}")
    rate = await naive_rate(settings, mongodb_url or settings.mongodb_url, count)
    print(f"naive baseline      {rate:8.0f} cmd/s  (one message at a time, confirm per message)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.mongodb_url))
