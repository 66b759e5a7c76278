"""Copies of one command (one AMQP `message_id`) have one effect and one answer (SPEC §9).

Copies arrive together in real life: publisher retries after a lost confirm, outbox relays,
two worker processes on one queue. Each case here asserts the database, one event per effect
and identical answers for every copy.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from typing import Any

from tests.integration.conftest import (
    TOKEN,
    EventTap,
    StartWorker,
    command,
    new_id,
    seed_profile,
)
from tests.integration.crashing import CrashingStore
from tests.integration.test_concurrency import answers_from_two_workers
from tests.support import LIVE
from worker.runtime.client import CommandClient, Reply
from worker.settings import Settings
from worker.store.mongo import MongoStore

A = "a7a7a7a7a7a7a7a7a7a7a7a7"
B = "b7b7b7b7b7b7b7b7b7b7b7b7"


def relation(action: str, **extra: Any) -> dict[str, Any]:
    body = {
        "action": action,
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": A},
        "profile_b": {"profile_id": B},
        "token": TOKEN,
    }
    return {**body, **extra}


async def send_copies(
    client: CommandClient, queue: str, stream: list[tuple[str, dict[str, Any], int]]
) -> int:
    """Publish each (message id, body, copies) of `stream`, copies back to back."""
    sent = 0
    for message_id, body, copies in stream:
        for _ in range(copies):
            await client.send(queue, body, message_id=message_id)
            sent += 1
    return sent


def answered_alike(
    answers: dict[str, list[Reply]], stream: list[tuple[str, dict[str, Any], int]]
) -> None:
    """Every copy of every command was answered, all copies of one alike, with success."""
    for message_id, _, copies in stream:
        assert len(answers[message_id]) == copies, message_id
        assert all(a == answers[message_id][0] for a in answers[message_id]), message_id
        assert answers[message_id][0]["error"] == 0, answers[message_id][0]


def by_message(replies: list[Reply]) -> dict[str, list[Reply]]:
    """Answers grouped by the command they answer (the client correlates by message id)."""
    grouped: dict[str, list[Reply]] = defaultdict(list)
    for reply in replies:
        grouped[str(reply.correlation_id)].append(reply)
    return grouped


async def events_of(tap: EventTap, count: int) -> Counter[tuple[str, str]]:
    """The first `count` events, and any that already came after them, by (routing key,
    message id)."""
    events = [await tap.next() for _ in range(count)] + tap.drained()
    return Counter((e["_routing_key"], e["message_id"]) for e in events)


async def test_copies_of_imports_in_one_batch_apply_once(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    event_tap: EventTap,
    start_worker: StartWorker,
) -> None:
    created, bumped, tagged = new_id(), new_id(), new_id()
    email = "copies@example.com"
    stream = [
        (created, command(email, data={"score": 1.5}), 2),
        (bumped, command(email, data={"score": {"action": "incr", "value": 5}}), 3),
        (tagged, command(email, data={"interests": {"action": "add", "value": "a, b"}}), 2),
    ]
    sent = await send_copies(client, settings.import_queue, stream)
    await start_worker()  # everything is queued: the copies share one batch
    answers = by_message(await client.replies(sent))

    answered_alike(answers, stream)
    assert [answers[m][0]["created"] for m in (created, bumped, tagged)] == [True, False, False]
    docs = await mongo.profiles.find({}).to_list()
    assert len(docs) == 1
    assert docs[0]["fields"]["score"] == 6.5, "the incr applied once"
    assert sorted(docs[0]["fields"]["interests"]) == ["a", "b"]
    assert await events_of(event_tap, 3) == Counter(
        {
            ("profile.created", created): 1,
            ("profile.updated", bumped): 1,
            ("profile.updated", tagged): 1,
        }
    )


async def test_copies_of_relation_commands_in_one_batch_apply_once(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    event_tap: EventTap,
    start_worker: StartWorker,
) -> None:
    await seed_profile(mongo, A, 10)
    await seed_profile(mongo, B, 11)
    attach, strengthen, edit, detach = new_id(), new_id(), new_id(), new_id()
    stream = [
        (attach, relation("attach", weights={"weight": 1}), 2),
        (strengthen, relation("strengthen", weights={"weight": 5}), 3),
        (edit, relation("edit", weights={"visits": 7}, priority=80), 2),
        (detach, relation("detach"), 2),
    ]
    sent = await send_copies(client, settings.relations_queue, stream)
    await start_worker()
    answers = by_message(await client.replies(sent))

    answered_alike(answers, stream)
    assert answers[attach][0]["created"] is True, "a copy of the creating attach is no 409"
    assert answers[strengthen][0]["props"] == {"weight": 6}
    assert answers[edit][0]["props"] == {"weight": 6, "visits": 7}
    assert answers[detach][0]["props"] == {"weight": 6, "visits": 7}
    assert len({answers[m][0]["relation_id"] for m, _, _ in stream}) == 1
    assert await mongo.relations.count_documents(LIVE) == 0
    assert await mongo.relation_keys.count_documents({}) == 0
    assert await events_of(event_tap, 4) == Counter(
        {
            ("relation.attached", attach): 1,
            ("relation.changed", strengthen): 1,
            ("relation.changed", edit): 1,
            ("relation.detached", detach): 1,
        }
    )


async def test_a_later_copy_of_a_creating_attach_gets_the_original_answer(
    client: CommandClient, settings: Settings, mongo: Any, events: EventTap
) -> None:
    await seed_profile(mongo, A, 10)
    await seed_profile(mongo, B, 11)
    message_id = new_id()
    await client.send(
        settings.relations_queue, relation("attach", weights={}), message_id=message_id
    )
    first = await client.reply()
    await client.send(
        settings.relations_queue, relation("attach", weights={}), message_id=message_id
    )
    second = await client.reply()

    assert first["error"] == 0
    assert second == first, "the recorded answer, not 409"
    assert await mongo.relations.count_documents(LIVE) == 1
    assert await events_of(events, 1) == Counter({("relation.attached", message_id): 1})


def copies_stream(count: int, build: Any, seed: int) -> list[tuple[str, dict[str, Any], int]]:
    """`count` commands, a third of them published two to four times."""
    chance = random.Random(seed)
    return [
        (new_id(), build(n), chance.choice([2, 3, 4]) if n % 3 == 0 else 1) for n in range(count)
    ]


async def test_copies_taken_by_two_processes_strengthen_once(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, event_tap: EventTap
) -> None:
    await seed_profile(mongo, A, 10)
    await seed_profile(mongo, B, 11)
    stream = copies_stream(60, lambda n: relation("strengthen", weights={"weight": n % 4 + 1}), 8)
    sent = await send_copies(client, settings.relations_queue, stream)
    answers = by_message(await answers_from_two_workers(client, settings, sent, batch_max_size=8))

    answered_alike(answers, stream)
    doc = await mongo.relations.find_one({})
    assert doc["props"]["weight"] == sum(n % 4 + 1 for n in range(len(stream)))
    effects = await events_of(event_tap, len(stream))
    assert set(effects.values()) == {1}, "one event per command, whichever copy won"
    assert {message_id for _, message_id in effects} == {m for m, _, _ in stream}


async def test_copies_taken_by_two_processes_import_once(
    client: CommandClient, settings: Settings, store: MongoStore, mongo: Any, event_tap: EventTap
) -> None:
    emails = [f"twin{n}@example.com" for n in range(4)]
    stream = copies_stream(
        48,
        lambda n: command(emails[n % 4], data={"age": {"action": "incr", "value": 1}}),
        9,
    )
    sent = await send_copies(client, settings.import_queue, stream)
    answers = by_message(await answers_from_two_workers(client, settings, sent, batch_max_size=8))

    answered_alike(answers, stream)
    docs = await mongo.profiles.find({}).to_list()
    assert sorted(doc["fields"]["age"] for doc in docs) == [12, 12, 12, 12]
    effects = await events_of(event_tap, len(stream))
    assert set(effects.values()) == {1}
    assert {message_id for _, message_id in effects} == {m for m, _, _ in stream}


async def test_copies_around_a_crash_after_the_write_apply_once(
    client: CommandClient,
    settings: Settings,
    mongo: Any,
    event_tap: EventTap,
    start_worker: StartWorker,
) -> None:
    await seed_profile(mongo, A, 10)
    await seed_profile(mongo, B, 11)
    crashing = CrashingStore.around(settings, "relations", write_first=True)
    _, _, doomed = await start_worker(with_store=crashing)
    crashing.trap.armed = True
    message_id = new_id()
    body = relation("strengthen", weights={"weight": 4})
    await client.send(settings.relations_queue, body, message_id=message_id)
    await asyncio.wait_for(crashing.trap.reached.wait(), 20)
    await client.send(settings.relations_queue, body, message_id=message_id)  # a copy, queued
    doomed.cancel()  # the worker dies after the write, before any answer or ack
    await asyncio.gather(doomed, return_exceptions=True)
    assert (await mongo.relations.find_one({}))["props"]["weight"] == 4, "the write landed"

    await start_worker()
    answers = await client.replies(2, timeout=60)
    assert answers[0] == answers[1]
    assert (answers[0]["error"], answers[0]["created"], answers[0]["props"]) == (
        0,
        True,
        {"weight": 4},
    )
    assert (await mongo.relations.find_one({}))["props"]["weight"] == 4, "applied exactly once"
    assert await events_of(event_tap, 1) == Counter({("relation.attached", message_id): 1})
    await crashing.close()
