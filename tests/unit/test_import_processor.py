"""`ImportProcessor` on the real store: matching, create/update, refusals, queue order, and
exactly-once effects for copies of a command (SPEC §4, §9)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import OTHER_TOKEN, PARTNERS_TOKEN, READ_TOKEN, SMALL_TOKEN, TOKEN
from tests.unit.harness import (
    CrashingWrites,
    WorkerDied,
    World,
    code_of,
    envelope,
    events_of,
    import_command,
    result_of,
    run,
)
from worker.domain.envelope import Answered, Deferred, Refused, Replayed
from worker.domain.processing import MAX_ROUNDS
from worker.domain.shared.identity import profile_xxh
from worker.domain.shared.profiles import unique_key


def incr_and_tag(email: str = "ada@example.com") -> dict[str, Any]:
    return import_command(
        email,
        data={"age": {"action": "incr", "value": 5}, "interests": {"action": "add", "value": "x"}},
    )


async def test_a_new_email_creates_a_profile(world: World) -> None:
    body = import_command(data={"_fname": "Ada", "age": "36"}, feedback_id="fb-1", trigger_id=7)

    [outcome] = await run(world.imports(), [envelope(body, "m1", correlation_id="corr")])

    result = result_of(outcome)
    profile_id = result["profile_id"]
    assert result == {
        "error": 0,
        "error_text": "",
        "feedback_id": "fb-1",
        "message_id": "m1",
        "correlation_id": "corr",
        "matching_field": "email",
        "profile_id": profile_id,
        "profile_xxh": profile_xxh(profile_id),
        "created": True,
        "db_id": 10,
        "account_id": 1,
    }
    assert [event["event"] for event in events_of(outcome)] == [
        "profile.created",
        "trigger.requested",
    ]
    assert events_of(outcome)[0]["changed_fields"] == ["_fname", "age", "email"]
    assert isinstance(outcome, Answered)
    assert outcome.command_id == "import:m1"
    assert await world.fields(profile_id) == {
        "_fname": "Ada",
        "age": 36,
        "email": "ada@example.com",
    }
    owners = await world.ports().profiles.owners([unique_key(10, "email", "ada@example.com")])
    assert set(owners.values()) == {profile_id}


async def test_an_email_in_another_case_updates_the_same_profile(world: World) -> None:
    profile_id = await world.profile_id("ada@example.com")
    body = import_command(" ADA@Example.com ", data={"city": "Oslo"}, skip_triggers=True)

    [outcome] = await run(world.imports(), [envelope({**body, "trigger_id": 1, "workflow_id": 2})])

    assert result_of(outcome)["created"] is False
    assert result_of(outcome)["profile_id"] == profile_id
    assert [(e["event"], e.get("changed_fields")) for e in events_of(outcome)] == [
        ("profile.updated", ["city"]),
        ("workflow.requested", None),
    ]
    assert (await world.fields(profile_id))["city"] == "Oslo"


async def test_an_update_that_changes_nothing_emits_no_event(world: World) -> None:
    await world.profile_id("ada@example.com", city="Oslo")

    [outcome] = await run(world.imports(), [envelope(import_command(data={"city": "Oslo"}))])

    assert code_of(outcome) == 0
    assert events_of(outcome) == []


async def test_functional_updates(world: World) -> None:
    profile_id = await world.profile_id("ada@example.com", age=1, city="Oslo", interests=["a", "b"])
    data = {
        "age": {"action": "incr", "value": -3},
        "city": {"action": "unset"},
        "interests": {"action": "delete", "value": "a"},
    }

    [outcome] = await run(world.imports(), [envelope(import_command(data=data))])

    assert events_of(outcome)[0]["changed_fields"] == ["age", "city", "interests"]
    fields = await world.fields(profile_id)
    assert (fields["age"], "city" in fields, fields["interests"]) == (-2, False, ["b"])


SUBSCRIPTIONS = [
    {"resource_id": 100, "channel": "email", "email": "sub@example.com"},
    {"resource_id": 101, "channel": "sms", "phone": "+47 999 99 999"},
    {"resource_id": 102, "channel": "push", "provider": "fcm", "subscription_id": "tok-1"},
]

MATCHES: list[tuple[str, dict[str, Any]]] = [
    ("email", {"email": "ADA@example.com"}),
    ("email", {"email": "sub@example.com"}),
    ("email_profile", {"email": "ada@example.com"}),
    ("email_sub", {"email": "sub@example.com"}),
    ("email_sub", {"email": "sub@example.com", "resource_id": 100}),
    ("phone", {"phone": "+47 111 11 111"}),
    ("phone", {"phone": "4799999999"}),
    ("phone_sub", {"phone": "+4799999999"}),
    ("email_phone", {"email": "ada@example.com"}),
    ("email_phone", {"phone": "+4711111111"}),
    ("email_phone_sub", {"phone": "+4799999999"}),
    ("email_phone_sub", {"email": "sub@example.com"}),
    ("custom", {"field_name": "loyalty_id", "field_value": "L-1"}),
    ("custom", {"field_name": "city", "field_value": "Oslo"}),
    ("custom", {"field_name": "interests", "field_value": "y, x"}),
    ("push_sub", {"provider": "fcm", "subscription_id": "tok-1"}),
]


async def _matchable(world: World) -> str:
    return await world.profile_id(
        "ada@example.com",
        phones=["+47 111 11 111"],
        loyalty_id="L-1",
        city="Oslo",
        interests=["x", "y", "z"],
        subscriptions=SUBSCRIPTIONS,
    )


@pytest.mark.parametrize(("mode", "keys"), MATCHES)
async def test_every_matching_mode_finds_the_profile(
    world: World, mode: str, keys: dict[str, Any]
) -> None:
    profile_id = await _matchable(world)
    body = {**import_command(None, data={"age": 1}), "matching": mode, **keys}

    [outcome] = await run(world.imports(), [envelope(body)])

    assert (code_of(outcome), result_of(outcome)["created"]) == (0, False), result_of(outcome)
    assert result_of(outcome)["profile_id"] == profile_id
    assert result_of(outcome)["matching_field"] == mode
    assert (await world.fields(profile_id))["age"] == 1


@pytest.mark.parametrize(
    ("mode", "keys"),
    [
        ("email_profile", {"email": "sub@example.com"}),
        ("email_sub", {"email": "ada@example.com"}),
        ("email_sub", {"email": "sub@example.com", "resource_id": 101}),
        ("phone_sub", {"phone": "+47 111 11 111"}),
        ("custom", {"field_name": "interests", "field_value": "x, nope"}),
        ("custom", {"field_name": "city", "field_value": "Bergen"}),
        ("push_sub", {"provider": "apns", "subscription_id": "tok-1"}),
    ],
)
async def test_no_match_creates_a_profile(world: World, mode: str, keys: dict[str, Any]) -> None:
    await _matchable(world)
    body = {**import_command(None, data={"age": 1}), "matching": mode, **keys}

    [outcome] = await run(world.imports(), [envelope(body)])

    assert (code_of(outcome), result_of(outcome)["created"]) == (0, True), result_of(outcome)
    assert await world.profile_count() == 2


async def test_matching_by_profile_id_updates_only(world: World) -> None:
    profile_id = await world.profile_id("ada@example.com")
    by_id = import_command(None, matching="profile_id", profile_id=profile_id, data={"age": 2})
    unknown = {**by_id, "profile_id": "0" * 24}
    only = import_command("new@example.com", update_only=True)

    outcomes = await run(world.imports(), [envelope(by_id), envelope(unknown), envelope(only)])

    assert [code_of(o) for o in outcomes] == [0, 404, 404]
    assert (await world.fields(profile_id))["age"] == 2
    assert await world.profile_count() == 1


async def test_several_matches_are_refused_with_nothing_written(world: World) -> None:
    one = await world.profile_id("one@example.com", city="Oslo")
    await world.profile_id("two@example.com", city="Oslo")
    body = import_command(None, matching="custom", field_name="city", field_value="Oslo")

    [outcome] = await run(world.imports(), [envelope({**body, "data": {"age": 9}})])

    assert code_of(outcome) == 409
    assert "not precise" in result_of(outcome)["error_text"]
    assert "age" not in await world.fields(one)


async def test_the_quick_form_and_a_custom_unique_match(world: World) -> None:
    flat = {"account_id": 1, "db_id": 10, "token": TOKEN, "matching": "loyalty_id"}

    outcomes = await run(
        world.imports(),
        [
            envelope({**flat, "loyalty_id": "L-7", "city": "Oslo"}),
            envelope({**flat, "loyalty_id": "L-7", "city": "Bergen"}),
        ],
    )

    assert [(code_of(o), result_of(o)["created"]) for o in outcomes] == [(0, True), (0, False)]
    assert await world.fields(result_of(outcomes[0])["profile_id"]) == {
        "loyalty_id": "L-7",
        "city": "Bergen",
    }


async def test_a_broker_user_bound_to_the_account_needs_no_token(world: World) -> None:
    body = import_command()
    del body["token"]

    [outcome] = await run(world.imports(), [envelope(body, user_id="crm")])

    assert code_of(outcome) == 0


@pytest.mark.parametrize(
    ("change", "code", "mentions"),
    [
        ({"data": {"shoe_size": 42}}, 400, "shoe_size"),
        ({"data": {"age": "old"}}, 400, "age"),
        ({"data": {"city": {"action": "incr", "value": 1}}}, 400, "city"),
        ({"matching": "vibes"}, 400, "matching"),
        ({"token": None}, 401, "token"),
        ({"token": "not-a-token-at-all-0000"}, 403, "token"),
        ({"token": READ_TOKEN}, 403, "write"),
        ({"token": PARTNERS_TOKEN}, 403, "database 10"),
        ({"token": OTHER_TOKEN}, 403, "account 1"),
        ({"account_id": 9}, 404, "account 9"),
        ({"db_id": 99}, 404, "database 99"),
        ({"db_id": 20}, 404, "database 20"),
        ({"data": {"subscriptions": [{"resource_id": 999, "channel": "email"}]}}, 404, "999"),
    ],
)
async def test_refusals_name_the_problem_and_write_nothing(
    world: World, change: dict[str, Any], code: int, mentions: str
) -> None:
    body = {
        key: value for key, value in {**import_command(), **change}.items() if value is not None
    }

    [outcome] = await run(world.imports(), [envelope(body, "m-refused")])

    assert code_of(outcome) == code
    assert mentions in result_of(outcome)["error_text"]
    assert events_of(outcome) == []
    assert await world.profile_count() == 0
    assert isinstance(outcome, Refused)
    assert not outcome.dead_letter, "a body that parses is not dead-lettered"


async def test_an_unparsable_body_is_refused_and_dead_lettered(world: World) -> None:
    outcomes = await run(
        world.imports(), [envelope(b"{nope", "m-bad"), envelope(b"x" * 70_000, "m-big")]
    )

    assert [code_of(o) for o in outcomes] == [400, 400]
    assert all(isinstance(o, Refused) and o.dead_letter for o in outcomes)


async def test_a_unique_value_of_another_profile_is_refused_with_435(world: World) -> None:
    await world.profile_id("ada@example.com", loyalty_id="L-1")
    bob = await world.profile_id("bob@example.com")
    takes_email = import_command(
        None, matching="custom", field_name="loyalty_id", field_value="L-2", data={}
    )
    takes_email["data"] = {"email": "ada@example.com"}
    takes_loyalty = import_command("bob@example.com", data={"loyalty_id": "L-1"})

    outcomes = await run(world.imports(), [envelope(takes_email), envelope(takes_loyalty)])

    assert [code_of(o) for o in outcomes] == [435, 435]
    assert "loyalty_id" not in await world.fields(bob)
    assert await world.profile_count() == 2


async def test_a_changed_unique_value_frees_the_old_one(world: World) -> None:
    ada = await world.profile_id("ada@example.com", loyalty_id="L-1")
    moved = import_command("ada@example.com", data={"loyalty_id": "L-2"})
    reused = import_command("bob@example.com", data={"loyalty_id": "L-1"})

    [first] = await run(world.imports(), [envelope(moved)])
    [second] = await run(world.imports(), [envelope(reused)])

    assert [code_of(first), code_of(second)] == [0, 0]
    assert (await world.fields(ada))["loyalty_id"] == "L-2"
    assert (await world.fields(result_of(second)["profile_id"]))["loyalty_id"] == "L-1"


async def test_max_profiles_is_enforced_on_creation(world: World) -> None:
    small = {"account_id": 3, "db_id": 30, "token": SMALL_TOKEN}
    first = import_command("one@example.com", **small)
    second = import_command("two@example.com", **small)

    outcomes = await run(world.imports(), [envelope(first), envelope(second), envelope(first)])

    assert [code_of(o) for o in outcomes] == [0, 402, 0]
    assert result_of(outcomes[2])["created"] is False


async def test_commands_on_one_profile_apply_in_queue_order_within_a_batch(world: World) -> None:
    bodies = [
        import_command(data={"age": 1}),
        import_command("ADA@example.com", data={"age": {"action": "incr", "value": 2}}),
        import_command(data={"city": "Oslo", "age": {"action": "incr", "value": 3}}),
        import_command("bob@example.com", data={"age": 10}),
        import_command(data={"city": "Bergen"}),
    ]

    outcomes = await run(world.imports(), [envelope(body) for body in bodies])

    assert [code_of(o) for o in outcomes] == [0] * 5
    assert [result_of(o)["created"] for o in outcomes] == [True, False, False, True, False]
    ada = result_of(outcomes[0])["profile_id"]
    assert {result_of(o)["profile_id"] for o in outcomes} == {
        ada,
        result_of(outcomes[3])["profile_id"],
    }
    assert [events_of(o)[0]["event"] for o in outcomes] == ["profile.created"] + [
        "profile.updated"
    ] * 2 + ["profile.created", "profile.updated"]
    assert (await world.fields(ada))["age"] == 6
    assert (await world.fields(ada))["city"] == "Bergen"


@pytest.mark.parametrize("copies", [2, 3, 5])
async def test_copies_in_one_batch_have_one_effect_and_one_set_of_events(
    world: World, copies: int
) -> None:
    batch = [envelope(incr_and_tag(), "m1") for _ in range(copies)]

    outcomes = await run(world.imports(), batch)

    first, rest = outcomes[0], outcomes[1:]
    assert code_of(first) == 0
    assert isinstance(first, Answered)
    assert [e["event"] for e in events_of(first)] == ["profile.created"]
    assert all(result_of(o) == result_of(first) for o in rest)
    assert all(isinstance(o, Replayed) and events_of(o) == [] for o in rest)
    assert await world.profile_count() == 1
    assert await world.fields(result_of(first)["profile_id"]) == {
        "age": 5,
        "interests": ["x"],
        "email": "ada@example.com",
    }


async def test_copies_of_an_update_in_one_batch_apply_once(world: World) -> None:
    profile_id = await world.profile_id("ada@example.com", age=1, interests=["a"])
    batch = [envelope(incr_and_tag(), "m1"), envelope(import_command("bob@example.com"), "m2")]
    batch += [envelope(incr_and_tag(), "m1")] * 3

    outcomes = await run(world.imports(), batch)

    assert [isinstance(o, Replayed) for o in outcomes] == [False, False, True, True, True]
    assert all(isinstance(o, Answered) for o in outcomes[:2])
    assert all(result_of(o) == result_of(outcomes[0]) for o in outcomes[2:])
    assert events_of(outcomes[0])[0]["changed_fields"] == ["age", "interests"]
    assert (await world.fields(profile_id))["age"] == 6
    assert (await world.fields(profile_id))["interests"] == ["a", "x"]


async def test_a_copy_in_a_later_batch_gets_the_same_answer_and_no_events(world: World) -> None:
    [first] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])
    [again] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])
    [elsewhere] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])

    assert result_of(again) == result_of(elsewhere) == result_of(first)
    assert isinstance(again, Replayed)
    assert isinstance(elsewhere, Replayed)
    assert events_of(again) == events_of(elsewhere) == []
    assert (await world.fields(result_of(first)["profile_id"]))["age"] == 5


async def test_a_refusal_is_answered_the_same_to_a_later_copy(world: World) -> None:
    body = import_command(data={"nope": 1})
    [first] = await run(world.imports(), [envelope(body, "m1")])
    [again] = await run(world.imports(), [envelope(body, "m1")])

    assert code_of(first) == 400
    assert result_of(again) == result_of(first)
    assert isinstance(again, Replayed)


async def test_a_copy_an_earlier_owner_decided_but_never_answered_is_answered_once(
    world: World,
) -> None:
    """The earlier owner lost its partition after its write, before its answer went out."""
    [first] = await world.imports().process([envelope(incr_and_tag(), "m1")])
    [copy] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])

    assert isinstance(copy, Answered), "its answer may never have been sent: sent now"
    assert result_of(copy) == result_of(first)
    assert events_of(copy) == events_of(first)
    [later] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])
    assert isinstance(later, Replayed)
    assert result_of(later) == result_of(first)
    assert (await world.fields(result_of(first)["profile_id"]))["age"] == 5


@pytest.mark.parametrize("after_landing", [True, False])
async def test_a_crash_around_the_write_is_finished_by_the_next_owner_once(
    world: World, after_landing: bool
) -> None:
    crashing = CrashingWrites(world.ports().profiles, "profiles", after_landing=after_landing)
    with pytest.raises(WorkerDied):
        await world.imports(crashing).process([envelope(incr_and_tag(), "m1")])
    assert await world.profile_count() == int(after_landing)

    [answer] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])

    assert code_of(answer) == 0
    assert result_of(answer)["created"] is True
    assert isinstance(answer, Answered)
    assert [e["event"] for e in events_of(answer)] == ["profile.created"]
    assert await world.profile_count() == 1
    profile_id = result_of(answer)["profile_id"]
    assert (await world.fields(profile_id))["age"] == 5
    assert (await world.fields(profile_id))["interests"] == ["x"]
    [again] = await run(world.imports(), [envelope(incr_and_tag(), "m1")])
    assert isinstance(again, Replayed)
    assert result_of(again) == result_of(answer)


async def test_a_crash_after_an_update_landed_is_answered_with_its_events(world: World) -> None:
    profile_id = await world.profile_id("ada@example.com", age=1)
    crashing = CrashingWrites(world.ports().profiles, "profiles", after_landing=True)
    with pytest.raises(WorkerDied):
        await world.imports(crashing).process([envelope(incr_and_tag(), "m1")])

    outcomes = await run(world.imports(), [envelope(incr_and_tag(), "m1")] * 2)

    assert [code_of(o) for o in outcomes] == [0, 0]
    assert result_of(outcomes[0]) == result_of(outcomes[1])
    assert result_of(outcomes[0])["created"] is False
    assert [e["event"] for e in events_of(outcomes[0])] == ["profile.updated"]
    assert events_of(outcomes[1]) == []
    assert (await world.fields(profile_id))["age"] == 6


async def test_commands_without_a_message_id_are_each_applied(world: World) -> None:
    outcomes = await run(world.imports(), [envelope(incr_and_tag())] * 3)

    assert [result_of(o)["created"] for o in outcomes] == [True, False, False]
    assert all(isinstance(o, Answered) and o.command_id is None for o in outcomes)
    assert (await world.fields(result_of(outcomes[0])["profile_id"]))["age"] == 15


async def test_a_burst_on_one_profile_is_written_in_bounded_rounds_and_applied_once(
    world: World,
) -> None:
    """A batch writes at most MAX_ROUNDS commands on one profile (the store remembers a bounded
    number of applied commands per profile); the rest come back later, and a redelivery of the
    whole batch after a crash applies none of the written ones again."""
    ada = await world.profile_id("ada@example.com", age=0)
    bump = import_command("ada@example.com", data={"age": {"action": "incr", "value": 1}})
    batch = [envelope(bump, f"m{n}") for n in range(20)]

    first = await world.imports().process(batch)  # written; dies before `complete`
    deferred = [n for n, outcome in enumerate(first) if isinstance(outcome, Deferred)]
    assert deferred == list(range(MAX_ROUNDS, 20))
    assert (await world.fields(ada))["age"] == MAX_ROUNDS

    again = await world.imports().process(batch)  # the broker redelivers the whole batch
    assert [code_of(outcome) for outcome in again[:MAX_ROUNDS]] == [0] * MAX_ROUNDS
    assert (await world.fields(ada))["age"] == 2 * MAX_ROUNDS, (
        "the first eight were not applied again"
    )
