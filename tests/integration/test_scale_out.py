"""Ordered scale-out through real queues and real `profile-worker run` processes (SPEC §9,
issue 16): P = 8 partitions and three processes. While a numbered stream of commands per key
flows through the normal command queue, the process routing it is killed with SIGKILL, a
process joins and another is stopped with SIGTERM. Then every key is at its last step, its
events left in step order, every command was answered and every copy of an answer is alike
(a second answer after the kill is allowed), no effect was applied twice, and the two processes
left share the partitions evenly (/readyz and `profile_worker_partitions_owned`).

Imports address their profiles by email, by a unique custom field and by profile id; relation
commands strengthen (numbered increments: the sums are exact), edit (numbered sets: each ends at
its last) and detach (some relations end detached, some are strengthened again after it: created
anew). The workers' logs are under /tmp/scale_out/<test>/; a failure names every key that went
wrong, what the fleet went through and where the logs are; `-s` prints the same for a pass.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from bson import ObjectId

from tests.integration.conftest import TOKEN, EventTap, delete_topology, seed_profile
from tests.integration.scale_out import (
    LOG_ROOT,
    Step,
    answer_problems,
    event_problems,
    interleaved,
    report,
    streamed_through_faults,
    summary,
)
from tests.support import LIVE
from worker.runtime.client import CommandClient, Reply
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

STEPS = 10
STREAM_SECONDS = 9.0
"""The stream is paced to last about this long (longer when the workers are slower), so that
the faults strike while it flows."""
WORKER: dict[str, Any] = {
    "partitions": 8,
    "partition_poll_seconds": 0.3,
    "batch_max_size": 32,
    "prefetch_count": 64,
    "shutdown_grace_seconds": 10.0,
    "log_level": "INFO",
}
TIMEOUT = 300
"""Seconds per test, beyond its own bounded waits: a stalled run still reports what it saw."""


@pytest.fixture
async def partitioned(
    settings: Settings, store: MongoStore, broker: aio_pika.abc.AbstractChannel
) -> AsyncIterator[Settings]:
    """The test's settings with P = 8, its topology declared before anything is published; the
    partition queues and exchanges are deleted after (the `settings` fixture deletes the rest,
    by the names of P = 1)."""
    partitioned = settings.model_copy(update=WORKER)
    await declare(broker, partitioned)
    yield partitioned
    with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError):
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
        async with connection:
            await delete_topology(connection, partitioned)


@pytest.fixture
def log_dir(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return LOG_ROOT / f"{name}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"


# Imports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Addressing:
    """How the stream addresses its profiles: the matching mode, and how many profiles."""

    mode: str
    profiles: int

    @property
    def creates(self) -> bool:
        """Whether a profile's first step creates it (else the profiles are seeded first)."""
        return self.mode != "profile_id"

    def keys(self) -> list[str]:
        if self.mode == "email":
            return [f"scale{p}@example.com" for p in range(self.profiles)]
        if self.mode == "custom":
            return [f"L-{p:04d}" for p in range(self.profiles)]
        return [str(ObjectId()) for _ in range(self.profiles)]

    def body(self, key: str, step: int) -> dict[str, Any]:
        """Step n sets `score` to n and adds 1 to `age`: the last value shows the order, the
        sum that nothing was applied twice."""
        data: dict[str, Any] = {"score": step, "age": {"action": "incr", "value": 1}}
        common: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN, "data": data}
        if self.mode == "email":
            return {**common, "email": key}
        if self.mode == "custom":
            data["loyalty_id"] = key
            return {**common, "matching": "custom", "field_name": "loyalty_id", "field_value": key}
        return {**common, "matching": "profile_id", "profile_id": key}


ADDRESSINGS = [Addressing("email", 200), Addressing("custom", 100), Addressing("profile_id", 100)]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("addressing", ADDRESSINGS, ids=[a.mode for a in ADDRESSINGS])
async def test_imports_keep_order_and_apply_once_through_kill_join_and_sigterm(
    partitioned: Settings,
    client: CommandClient,
    event_tap: EventTap,
    mongo: Any,
    log_dir: Path,
    addressing: Addressing,
) -> None:
    keys = addressing.keys()
    if not addressing.creates:
        for key in keys:
            await seed_profile(mongo, key, 10, _fname="Seeded")
    stream = interleaved(keys, STEPS, addressing.body, seed=len(keys))
    queue = partitioned.import_queue
    run = await streamed_through_faults(
        partitioned, client, event_tap, queue, stream, log_dir, STREAM_SECONDS
    )

    def answer(step: Step) -> Mapping[str, Any]:
        created = addressing.creates and step.step == 0
        wanted = {"error": 0, "created": created, "matching_field": addressing.mode}
        return wanted if addressing.creates else {**wanted, "profile_id": step.key}

    def event(step: Step) -> str:
        return "profile.created" if addressing.creates and step.step == 0 else "profile.updated"

    problems = [*run.problems, *answer_problems(stream, run.answers, answer)]
    problems += event_problems(stream, run.events, event)
    profile_of, found = _profiles_answered(stream, run.answers)
    problems += found
    problems += await _profiles_at_last_step(mongo, profile_of, len(keys))
    assert not problems, report(run, problems)
    print(summary(addressing.mode, stream, run))


def _profiles_answered(
    stream: Sequence[Step], answers: Mapping[str, Sequence[Reply]]
) -> tuple[dict[str, str], list[str]]:
    """Each key's profile id, as its answers name it: one per key, none shared by two keys."""
    ids: dict[str, set[str]] = {}
    for step in stream:
        for reply in answers.get(step.message_id, []):
            ids.setdefault(step.key, set()).add(str(reply.get("profile_id")))
    problems = [
        f"{key}: answered with profile ids {sorted(v)}" for key, v in ids.items() if len(v) > 1
    ]
    profile_of = {key: min(v) for key, v in ids.items()}
    if len(set(profile_of.values())) != len(profile_of):
        problems.append("two keys answered with one profile id")
    return profile_of, problems


async def _profiles_at_last_step(
    mongo: Any, profile_of: Mapping[str, str], count: int
) -> list[str]:
    """Each profile at its last `score`, its `age` incremented once per step; no other one."""
    problems = []
    docs = {str(doc["_id"]): doc async for doc in mongo.profiles.find({"db_id": 10})}
    if len(docs) != count:
        problems.append(f"{len(docs)} profiles in database 10, expected {count}")
    for key, profile_id in profile_of.items():
        fields = docs.get(profile_id, {}).get("fields", {})
        got = (fields.get("score"), fields.get("age"))
        if got != (STEPS - 1, STEPS):
            problems.append(
                f"{key} ({profile_id}): (score, age) {got}, expected {(STEPS - 1, STEPS)}"
            )
    return problems


# Relations -----------------------------------------------------------------------------------

SIDE_A, SIDE_B = 20, 4
"""Relations of type 500 between 20 profiles of database 10 and 4 of database 11: 80."""
REBORN_WEIGHT = 10


@dataclass(frozen=True)
class RelationPlan:
    """A relation's fate: `kept` (strengthened and edited), `detached` (by its last step), or
    `reborn` (detached, then strengthened: SPEC §5 creates it anew, with a new relation id)."""

    a: str
    b: str
    fate: str

    @property
    def key(self) -> str:
        return f"{self.a}>{self.b}"

    def action(self, step: int) -> tuple[str, dict[str, Any]]:
        """Step n strengthens `weight` by n + 1, or (every third) edits `visits` to n; the
        fate's detach (and strengthen after it) come last."""
        last = STEPS - 1
        if (self.fate, step) in (("detached", last), ("reborn", last - 1)):
            return "detach", {}
        if (self.fate, step) == ("reborn", last):
            return "strengthen", {"weight": REBORN_WEIGHT}
        if step % 3 == 2:
            return "edit", {"visits": step}
        return "strengthen", {"weight": step + 1}

    def body(self, step: int) -> dict[str, Any]:
        action, weights = self.action(step)
        body: dict[str, Any] = {
            "action": action,
            "account_id": 1,
            "rel_id": 500,
            "profile_a": {"profile_id": self.a},
            "profile_b": {"profile_id": self.b},
            "token": TOKEN,
        }
        return {**body, "weights": weights} if weights else body

    def states(self) -> list[dict[str, Any] | None]:
        """The relation's props after each step (None: there is no relation)."""
        props: dict[str, Any] | None = None
        after = []
        for step in range(STEPS):
            action, weights = self.action(step)
            if action == "detach":
                props = None
            elif action == "edit":
                props = {**(props or {}), **weights}
            else:
                props = dict(props or {})
                for name, value in weights.items():
                    props[name] = props.get(name, 0) + value
            after.append(props)
        return after


def relation_plans(a_side: Sequence[str], b_side: Sequence[str]) -> list[RelationPlan]:
    fates = ["detached", "reborn", "kept", "kept"]
    pairs = [(a, b) for a in a_side for b in b_side]
    return [RelationPlan(a, b, fates[n % len(fates)]) for n, (a, b) in enumerate(pairs)]


@pytest.mark.timeout(TIMEOUT)
async def test_relations_keep_order_and_apply_once_through_kill_join_and_sigterm(
    partitioned: Settings, client: CommandClient, event_tap: EventTap, mongo: Any, log_dir: Path
) -> None:
    a_side = [await seed_profile(mongo, str(ObjectId()), 10, _fname="A") for _ in range(SIDE_A)]
    b_side = [await seed_profile(mongo, str(ObjectId()), 11, _fname="B") for _ in range(SIDE_B)]
    plans = {plan.key: plan for plan in relation_plans(a_side, b_side)}
    states = {key: plan.states() for key, plan in plans.items()}
    stream = interleaved(list(plans), STEPS, lambda key, step: plans[key].body(step), seed=7)
    queue = partitioned.relations_queue
    run = await streamed_through_faults(
        partitioned, client, event_tap, queue, stream, log_dir, STREAM_SECONDS
    )

    def created(step: Step) -> bool:
        return step.step == 0 or states[step.key][step.step - 1] is None

    def answer(step: Step) -> Mapping[str, Any]:
        plan = plans[step.key]
        action, _ = plan.action(step.step)
        wanted: dict[str, Any] = {"error": 0, "action": action, "profile_a": plan.a}
        wanted["profile_b"] = plan.b
        if action == "detach":
            return wanted
        return {**wanted, "created": created(step), "props": states[step.key][step.step]}

    def event(step: Step) -> str:
        if plans[step.key].action(step.step)[0] == "detach":
            return "relation.detached"
        return "relation.attached" if created(step) else "relation.changed"

    problems = [*run.problems, *answer_problems(stream, run.answers, answer)]
    problems += event_problems(stream, run.events, event)
    problems += _relation_ids(stream, run.answers, plans)
    problems += await _relations_stored(mongo, plans, states)
    assert not problems, report(run, problems)
    print(summary("relations", stream, run))


def _relation_ids(
    stream: Sequence[Step],
    answers: Mapping[str, Sequence[Reply]],
    plans: Mapping[str, RelationPlan],
) -> list[str]:
    """One relation id per life of a relation (a detach ends one), none shared by two."""
    lives: dict[str, list[set[int]]] = {key: [set()] for key in plans}
    for step in sorted(stream, key=lambda s: (s.key, s.step)):
        for reply in answers.get(step.message_id, []):
            lives[step.key][-1].add(int(reply.get("relation_id") or -1))
        if plans[step.key].action(step.step)[0] == "detach":
            lives[step.key].append(set())
    problems = []
    every: list[int] = []
    for key, spans in lives.items():
        for ids in filter(None, spans):
            if len(ids) > 1:
                problems.append(f"{key}: one life of the relation answered with ids {sorted(ids)}")
            every.append(min(ids))
    if len(every) != len(set(every)):
        problems.append("one relation id answered for two relations, or two lives of one")
    return problems


async def _relations_stored(
    mongo: Any,
    plans: Mapping[str, RelationPlan],
    states: Mapping[str, Sequence[dict[str, Any] | None]],
) -> list[str]:
    """Each relation stored once with its props as after its last step; detached ones gone."""
    stored: dict[str, list[dict[str, Any]]] = {}
    async for doc in mongo.relations.find({"rel_id": 500, **LIVE}):
        stored.setdefault(f"{doc['profile_id_a']}>{doc['profile_id_b']}", []).append(doc)
    problems = [f"{key}: stored, never commanded" for key in stored if key not in plans]
    for key, plan in plans.items():
        final = states[key][-1]
        got = [doc.get("props") for doc in stored.get(key, [])]
        if got != ([] if final is None else [final]):
            expected = "none" if final is None else [final]
            problems.append(f"{key} ({plan.fate}): stored {got}, expected {expected}")
    return problems
