"""The reference model on small hand-made streams: if it is wrong, the chaos suite is blind."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from tests.chaos.check import Findings, check
from tests.chaos.generator import Message, Mix, setup, stream
from tests.chaos.model import Answer, Expected, Model, RelationState
from tests.integration.conftest import CATALOG
from tests.integration.services import ServiceUrls
from tests.support import strings_under
from tests.unit.harness import (
    a_world,
    all_relations,
    envelope,
    events_of,
    result_of,
    run,
)
from worker.domain.envelope import Deferred
from worker.domain.imports.processor import ImportProcessor
from worker.domain.order import order_key_of
from worker.domain.relations.processor import RelationProcessor
from worker.domain.shared.ports import Stores

ADA = (10, "ada@example.com")
BOB = (10, "bob@example.com")
PARTNER = (11, "p@example.com")


def imp(message_id: str, email: str, data: dict[str, Any], **extra: Any) -> Message:
    body = {"account_id": 1, "db_id": 10, "email": email, "data": data, **extra}
    return Message("imports", message_id, body)


def rel(message_id: str, action: str, **extra: Any) -> Message:
    body = {
        "action": action,
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"email": "Ada@Example.com"},
        "profile_b": {"profile_id": "b" * 24},
        **extra,
    }
    return Message("relations", message_id, body)


def with_profiles() -> Model:
    model = Model(directory={"b" * 24: PARTNER})
    return model.fold(
        [
            imp("s1", "ada@example.com", {}),
            Message("imports", "s2", {"db_id": 11, "email": "p@example.com", "data": {}}),
        ]
    )


def test_creation_then_updates_with_every_field_action() -> None:
    model = Model().fold(
        [
            imp(
                "1", " Ada@Example.com ", {"age": {"action": "incr", "value": "2"}, "city": "Oslo"}
            ),
            imp("2", "ADA@example.com", {"age": {"action": "incr", "value": 3}, "score": 1}),
            imp("3", "ada@example.com", {"interests": {"action": "add", "value": "a, b"}}),
            imp("4", "ada@example.com", {"interests": {"action": "add", "value": ["b", "c"]}}),
            imp("5", "ada@example.com", {"interests": {"action": "delete", "value": "a"}}),
            imp("6", "ada@example.com", {"city": {"action": "unset"}}),
        ]
    )
    assert model.profiles == {
        ADA: {"email": "Ada@Example.com", "age": 5, "score": 1.0, "interests": ["b", "c"]}
    }
    assert model.answers["1"] == Answer(0, created=True, profile=ADA)
    assert model.answers["6"] == Answer(0, profile=ADA)
    assert model.events["1"] == [Expected("profile.created", ADA, ("age", "city", "email"))]
    assert model.events["2"] == [Expected("profile.updated", ADA, ("age", "score"))]
    assert model.events["4"] == [Expected("profile.updated", ADA, ("interests",))]


def test_updates_that_change_nothing_cause_no_event() -> None:
    model = Model().fold(
        [
            imp("1", "ada@example.com", {"city": "Oslo", "interests": ["a"]}),
            imp("2", "ada@example.com", {"city": "Oslo", "age": {"action": "incr", "value": 0}}),
            imp("3", "ada@example.com", {"interests": {"action": "delete", "value": "z"}}),
            imp("4", "ada@example.com", {"vip": {"action": "unset"}}),
            imp("5", "ada@example.com", {"interests": {"action": "add", "value": "a"}}),
        ]
    )
    assert all(model.events[m] == [] for m in "2345")
    assert model.answers["3"] == Answer(0, profile=ADA)
    assert model.profiles[ADA]["age"] == 0, "an incr by 0 still writes the field"


def test_copies_answer_like_their_first_and_change_nothing() -> None:
    bump = imp("2", "ada@example.com", {"age": {"action": "incr", "value": 1}})
    model = Model().fold([imp("1", "ada@example.com", {"age": 1}), bump, bump, bump])
    assert model.profiles[ADA]["age"] == 2
    assert list(model.answers) == ["1", "2"]


def test_a_delayed_copy_of_a_creation_still_answers_created() -> None:
    create = imp("1", "ada@example.com", {})
    model = Model().fold([create, imp("2", "ada@example.com", {"city": "Lima"}), create])
    assert model.answers["1"] == Answer(0, created=True, profile=ADA)
    assert model.profiles[ADA]["city"] == "Lima"


def test_refusals_write_nothing() -> None:
    model = Model().fold(
        [
            imp("1", "ada@example.com", {"nickname": "x"}),
            imp("2", "ada@example.com", {"city": "Oslo"}, update_only=True),
            imp("3", "ada@example.com", {"loyalty_id": "L-1"}),
            imp("4", "bob@example.com", {"loyalty_id": "L-1"}),
        ]
    )
    assert [model.answers[m].error for m in "1234"] == [400, 404, 0, 435]
    assert list(model.profiles) == [ADA]
    assert model.events["4"] == []


def test_a_unique_value_released_can_be_taken() -> None:
    model = Model().fold(
        [
            imp("1", "ada@example.com", {"loyalty_id": "L-1"}),
            imp("2", "ada@example.com", {"loyalty_id": "L-2"}),
            imp("3", "bob@example.com", {"loyalty_id": "L-1"}),
            imp("4", "bob@example.com", {"loyalty_id": {"action": "unset"}}),
            imp("5", "ada@example.com", {"loyalty_id": "L-1"}),
        ]
    )
    assert [model.answers[m].error for m in "12345"] == [0, 0, 0, 0, 0]
    assert model.profiles[BOB] == {"email": "bob@example.com"}


def test_relation_life_cycle() -> None:
    model = with_profiles().fold(
        [
            rel("1", "strengthen", weights={"weight": 2, "active": True}),
            rel("2", "attach", weights={}),
            rel("3", "strengthen", weights={"weight": -5, "visits": 1}),
            rel("4", "edit", weights={"weight": 7}, relation_to_a="Son", priority=80),
            rel("5", "edit", weights={"weight": 7}),
            rel("6", "detach"),
            rel("7", "detach"),
            rel("8", "edit", weights={}),
        ]
    )
    key = (500, ADA, PARTNER)
    assert [model.answers[m].error for m in "12345678"] == [0, 409, 0, 0, 0, 0, 404, 0]
    assert model.answers["1"] == Answer(
        0, created=True, relation=(key, 1), props={"weight": 2, "active": True}
    )
    final = {"weight": 7, "active": True, "visits": 1}
    assert model.answers["6"] == Answer(0, relation=(key, 1), props=final)
    assert model.events["4"] == [
        Expected("relation.changed", None, None, (key, 1), RelationState(1, final, "Son", None, 80))
    ]
    assert model.events["5"] == [], "an edit that changes nothing"
    detached = RelationState(1, final, "Son", None, 80)
    assert model.events["6"] == [Expected("relation.detached", None, None, (key, 1), detached)]
    assert model.relations == {key: RelationState(2)}, "a new incarnation after a detach"
    assert model.answers["8"].created


def test_relation_refusals() -> None:
    model = with_profiles().fold(
        [
            rel("1", "attach", weights={"bogus": 1}),
            rel("2", "attach", weights={"active": 1}),
            rel("3", "attach", weights={}, profile_a={"email": "ghost@example.com"}),
            rel("4", "attach", weights={}, profile_b={"profile_id": "c" * 24}),
        ]
    )
    assert [model.answers[m].error for m in "1234"] == [400, 400, 404, 404]
    assert model.relations == {}


def test_the_generated_stream_is_seeded_and_copies_a_tenth_or_more() -> None:
    seeds = setup(3)
    ids = {message.body["email"]: f"{n:024x}" for n, message in enumerate(seeds)}
    directory = {ids[m.body["email"]]: (m.body["db_id"], m.body["email"]) for m in seeds}
    first, again = stream(3, 2_000, ids), stream(3, 2_000, ids)
    assert first.messages == again.messages
    duplicated = sum(1 for copies in first.copies.values() if copies > 1)
    assert len(first.copies) == 2_000
    assert duplicated >= 200
    assert len(first.messages) == sum(first.copies.values())
    model = Model(directory=directory).fold([*seeds, *first.messages])
    errors = {answer.error for answer in model.answers.values()}
    assert errors == {0, 400, 404, 409, 435}


def test_the_check_sees_loss_double_application_and_divergence() -> None:
    bump = {"age": {"action": "incr", "value": 1}}
    model = Model().fold(
        [
            imp("1", "ada@example.com", bump),
            imp("2", "ada@example.com", bump),
            imp("3", "x@y.z", {}),
        ]
    )
    answer = {"error": 0, "created": False, "profile_id": "p"}
    answers = {"1": [{**answer, "created": True}], "2": [answer, {**answer, "created": True}]}
    updated = {"message_id": "2", "event": "profile.updated", "profile_id": "p"}
    events: list[dict[str, Any]] = [
        {"message_id": "1", "event": "profile.created", "profile_id": "p"},
        {**updated, "changed_fields": ["age"], "occurred_at": "1"},
        {**updated, "changed_fields": ["age"], "occurred_at": "2"},  # decided twice
    ]
    stored = [{"_id": "p", "db_id": 10, "fields": {"email": "ada@example.com", "age": 3}}]
    found = check(model, {"2": 2}, answers, events, stored, [])
    assert [f.split(":")[0] for f in found.lost] == ["3"]
    assert [f.split(":")[0] for f in found.divergent] == ["2"]
    assert [f.split(" ")[0] for f in found.divergent_events] == ["2"]
    assert found.double_applied == 1
    assert len(found.profiles) == 2, "age 3 for 2, and x@y.z never created"
    assert found.unexpected_events == [
        "1 profile.created: changed (); expected "
        + repr(Expected("profile.created", ADA, ("age", "email")))
    ]


async def through_the_processors(
    mongodb_url: str, seed: int, commands: int, batch: int, mix: Mix | None = None
) -> tuple[Model, Findings]:
    """The generated stream through the worker's own processors on the real store, `batch`
    messages at a time per queue, checked against the model: the model and the domain agree,
    apart from anything found."""
    async with a_world(mongodb_url, CATALOG) as world:
        processors: dict[str, ImportProcessor | RelationProcessor] = {
            "imports": world.imports(),
            "relations": world.relations(),
        }
        answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        events: list[dict[str, Any]] = []

        async def drain(messages: list[Message]) -> None:
            """As the consumer does: deferred commands first in the next batch, failed ones
            back at the tail (the retry queues)."""
            for queue, processor in processors.items():
                mine = [m for m in messages if m.queue == queue]
                carried: list[Message] = []
                while mine or carried:
                    room = max(1, batch - len(carried))
                    taken, mine = [*carried, *mine[:room]], mine[room:]
                    envelopes = [envelope(m.body, message_id=m.message_id) for m in taken]
                    outcomes = await run(processor, envelopes)
                    carried = []
                    for message, outcome in zip(taken, outcomes, strict=True):
                        if isinstance(outcome, Deferred):
                            carried.append(message)
                            continue
                        if not result_of(outcome):
                            mine.append(message)
                            continue
                        answers[message.message_id].append(result_of(outcome))
                        events.extend(events_of(outcome))

        seeds = setup(seed)
        await drain(seeds)
        directory = {answers[m.message_id][0]["profile_id"]: _key(m) for m in seeds}
        chaos = stream(seed, commands, {email: pid for pid, (_, email) in directory.items()}, mix)
        await drain(chaos.messages)
        model = Model(directory=directory).fold([*seeds, *chaos.messages])
        profiles, unnamed = await stored_profiles(world.ports(), answers)
        relations = [
            {**vars(relation), "_id": relation.relation_id}
            for account in ACCOUNTS
            for relation in await all_relations(world.ports(), account)
        ]
    found = check(model, chaos.copies, answers, events, profiles, relations)
    if unnamed:
        found.profiles.append(f"{unnamed} stored profiles that no answer named")
    return model, found


ACCOUNTS = tuple(account.account_id for account in CATALOG.accounts)


async def stored_profiles(
    ports: Stores, answers: Mapping[str, list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], int]:
    """Every stored profile an answer named, read through the store's ports as the check
    takes them; and how many more profiles the accounts count (none, when all is well)."""
    named = sorted(set(strings_under(dict(answers), frozenset({"profile_id"}))))
    profiles = [
        {"_id": profile.profile_id, "db_id": profile.db_id, "fields": profile.fields}
        for database in CATALOG.databases
        for profile in (await ports.profiles.profiles(database.db_id, named)).values()
    ]
    counted = sum([await ports.profiles.count(account) for account in ACCOUNTS])
    return profiles, counted - len(profiles)


def _key(message: Message) -> tuple[int, str]:
    return int(message.body["db_id"]), str(message.body["email"])


async def test_the_model_agrees_with_the_domain_one_command_at_a_time(
    services: ServiceUrls,
) -> None:
    _, found = await through_the_processors(services.mongodb_url, seed=5, commands=2_000, batch=1)
    assert found.problems() == {}


@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("seed", [5, 2026])
async def test_the_model_agrees_with_the_domain_in_batches(
    services: ServiceUrls, seed: int, batch: int
) -> None:
    """Queue order inside and across batches: bursts on one profile, keys that address one
    profile or relation differently, unique values moving between profiles."""
    _, found = await through_the_processors(
        services.mongodb_url, seed=seed, commands=2_000, batch=batch
    )
    assert found.problems() == {}


def interleaved(messages: list[Message], seed: int) -> list[Message]:
    """`messages` as P partitions may apply them: each order key's commands (copies included)
    in their order, the keys interleaved at random."""
    chance = random.Random(seed)
    lanes: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        key = order_key_of(message.queue, orjson.dumps(message.body), 1 << 20)
        lanes[key or message.message_id].append(message)
    heads = {key: 0 for key in lanes}
    result: list[Message] = []
    while heads:
        key = chance.choice(list(heads))
        result.append(lanes[key][heads[key]])
        heads[key] += 1
        if heads[key] == len(lanes[key]):
            del heads[key]
    return result


def folded(seed: int, mix: Mix, order_seed: int | None) -> Model:
    """The model of a stream in publish order, or (with `order_seed`) in an interleaving."""
    seeds = setup(seed)
    ids = {str(m.body["email"]): f"{n:024x}" for n, m in enumerate(seeds)}
    messages = stream(seed, 2_000, ids, mix).messages
    if order_seed is not None:
        messages = interleaved(messages, order_seed)
    directory = {ids[str(m.body["email"])]: _key(m) for m in seeds}
    return Model(directory=directory).fold([*seeds, *messages])


def outcome(model: Model) -> tuple[Any, ...]:
    return model.answers, model.events, model.profiles, model.relations


@pytest.mark.parametrize("seed", [5, 2026])
def test_the_keyed_stream_holds_the_model_whatever_the_order_across_keys(seed: int) -> None:
    """What makes the unchanged model valid for P > 1 partitions: the keyed stream's outcome
    (every answer, event, profile and relation) depends only on the order within each key."""
    expected = outcome(folded(seed, Mix(keyed=True), None))
    for order_seed in range(3):
        assert outcome(folded(seed, Mix(keyed=True), order_seed)) == expected


def test_the_default_stream_depends_on_the_order_across_keys() -> None:
    """The default stream addresses profiles and relations through several keys and lets
    profiles contend for unique values: across partitions (SPEC §9: not ordered) the model of
    publish order does not hold, which is why partitioned runs use the keyed stream."""
    expected = folded(2026, Mix(), None)
    reordered = folded(2026, Mix(), 0)
    assert reordered.answers != expected.answers
    assert reordered.profiles != expected.profiles
    assert reordered.relations != expected.relations


async def test_the_model_agrees_with_the_domain_on_the_keyed_stream(services: ServiceUrls) -> None:
    _, found = await through_the_processors(
        services.mongodb_url, seed=2026, commands=2_000, batch=32, mix=Mix(keyed=True)
    )
    assert found.problems() == {}


def test_the_check_sees_a_key_decided_out_of_order() -> None:
    """By the events' `occurred_at`: a later command of one key decided before an earlier one
    is out of order; commands of other keys may be decided in any order."""
    first = imp("1", "ada@example.com", {"city": "Oslo"})
    second = imp("2", "ADA@example.com ", {"city": "Lima"})  # the same key, in normal form
    other = imp("3", "bob@example.com", {"city": "Pune"})
    model = Model().fold([first, second, other])
    event = {"event": "profile.created", "profile_id": "p"}
    events = [
        {**event, "message_id": "1", "occurred_at": "2026-01-01T00:00:02.000000Z"},
        {**event, "message_id": "2", "occurred_at": "2026-01-01T00:00:01.000000Z"},
        {**event, "message_id": "3", "occurred_at": "2026-01-01T00:00:00.000000Z"},
    ]
    found = check(model, {}, {}, events, [], [], [first, second, other, first])
    assert [f.split(":")[0] for f in found.out_of_order] == ["2"]
    assert check(model, {}, {}, events, [], []).out_of_order == [], "no order given: unchecked"
