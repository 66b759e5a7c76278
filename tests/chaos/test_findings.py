"""Where the worker departs from the reference model, each reduced to a minimal case on the
in-memory store (the processors exactly as a worker process drives them; what goes to a retry
queue comes back after what follows it, as through RabbitMQ). Each is marked xfail(strict)
until worker/ is fixed: a fix turns it into a failure that asks for the mark's removal.
"""

from __future__ import annotations

import pytest

from tests.chaos.test_model import a_world
from tests.unit.harness import (
    CrashingWrites,
    WorkerDied,
    envelope,
    import_command,
    relation_command,
    result_of,
    run,
)
from worker.domain.envelope import Outcome


def sequential(outcomes: list[Outcome]) -> list[int]:
    """Each command's code, as answered now (500: not answered yet, retried)."""
    return [int(result_of(o).get("error", 500)) for o in outcomes]


FOUND = "the worker breaks queue order here (SPEC §9): remove this mark once it is fixed"


async def test_found_and_fixed_ten_commands_on_one_profile_in_one_batch_all_apply() -> None:
    """Fixed in d21774b (the round limit is per job)."""
    world = await a_world()
    bodies = [import_command("ada@example.com", data={"city": f"c{n}"}) for n in range(10)]
    outcomes = await run(
        world.imports(), [envelope(b, message_id=f"m{n}") for n, b in enumerate(bodies)]
    )
    assert sequential(outcomes) == [0] * 10, "commands 9 and 10 are retried, out of order"


@pytest.mark.xfail(strict=True, reason=FOUND)
async def test_finding_a_refusal_lets_a_later_command_on_the_profile_jump_ahead() -> None:
    world = await a_world()
    ada = await world.profile_id("ada@example.com")
    bodies = [
        import_command("ada@example.com", data={"nickname": "x"}),  # 400
        import_command("ada@example.com", data={"city": "Oslo"}),
        import_command(None, matching="profile_id", profile_id=ada, data={"city": "Lima"}),
    ]
    outcomes = await run(world.imports(), [envelope(b) for b in bodies])
    assert sequential(outcomes) == [400, 0, 0]
    assert world.fields(ada)["city"] == "Lima", "the update by id went before the one by email"


@pytest.mark.xfail(strict=True, reason=FOUND)
async def test_finding_a_refusal_lets_a_later_relation_command_jump_ahead() -> None:
    world = await a_world()
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    await run(world.relations(), [envelope(relation_command("attach", ada, shop, weights={}))])
    by_email = {"profile_a": {"email": "ada@example.com"}}
    bodies = [
        relation_command("attach", ada, shop, weights={}),  # 409
        relation_command("strengthen", ada, shop, weights={"weight": 4}),
        relation_command("edit", ada, shop, weights={"weight": 1}, **by_email),
    ]
    outcomes = await run(world.relations(), [envelope(b) for b in bodies])
    assert sequential(outcomes) == [409, 0, 0]
    assert world.relations_stored()[0].props == {"weight": 1}, "the edit went first"


@pytest.mark.xfail(strict=True, reason=FOUND)
async def test_finding_a_unique_value_given_up_earlier_in_a_batch_can_be_taken() -> None:
    world = await a_world()
    await world.profile_id("ada@example.com", loyalty_id="L-1")
    bodies = [
        import_command("ada@example.com", data={"loyalty_id": {"action": "unset"}}),
        import_command("bob@example.com", data={"loyalty_id": "L-1"}),
    ]
    outcomes = await run(world.imports(), [envelope(b) for b in bodies])
    assert sequential(outcomes) == [0, 0], "435: Ada held L-1 when the batch was read"


@pytest.mark.xfail(strict=True, reason=FOUND)
async def test_finding_a_command_deferred_after_a_crash_is_overtaken_by_a_later_one() -> None:
    """The worker dies (kill -9) before its write; the broker redelivers its batch and the
    next command to the next owner (a restarted process, or the same process after a broker
    reconnect: processors, hence owners, are made per broker session) within the lease."""
    world = await a_world()
    ada = await world.profile_id("ada@example.com")
    oslo = envelope(import_command("ada@example.com", data={"city": "Oslo"}), message_id="m1")
    lima = envelope(import_command("ada@example.com", data={"city": "Lima"}), message_id="m2")
    dying = CrashingWrites(world.store.profiles, "profiles", after_landing=False)
    with pytest.raises(WorkerDied):
        await world.imports(dying).process([oslo])

    next_owner = world.imports()
    deferred, _ = await run(next_owner, [oslo, lima])
    world.outlive_leases()
    await run(next_owner, [oslo])  # back from the retry queue, after the later command
    assert result_of(deferred) == {}, "m1 deferred to the retry queue, m2 applied"
    assert world.fields(ada)["city"] == "Lima", "m1 (Oslo) landed after m2 (Lima)"


@pytest.mark.xfail(strict=True, reason="applied twice (SPEC §9): remove this mark once fixed")
async def test_finding_a_command_whose_relation_a_later_detach_removed_is_applied_again() -> None:
    """The worker dies after its batch's writes landed, before its answers were marked done;
    the next owner checks whether each write landed by the command's marker on the target
    relation, which the batch's own detach has removed: the strengthen is decided again and
    creates a new relation."""
    world = await a_world()
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    attach = relation_command("attach", ada, shop, weights={"weight": 1})
    await run(world.relations(), [envelope(attach)])
    batch = [
        envelope(relation_command("strengthen", ada, shop, weights={"weight": 2}), "m1"),
        envelope(relation_command("detach", ada, shop), "m2"),
    ]
    first = await world.relations().process(batch)  # written; dies before `complete`
    world.outlive_leases()
    again = await run(world.relations(), batch)  # the broker redelivers the batch
    assert result_of(again[0]) == result_of(first[0]), "m1 answered as it was the first time"
    assert world.relations_stored() == [], "m1 created a second relation after the detach"


@pytest.mark.xfail(strict=True, reason=FOUND)
async def test_finding_a_command_by_another_key_waits_out_its_rounds_behind_a_burst() -> None:
    """Ten updates by email, then one by id, of one profile in one batch: the last waits a
    round for each earlier one (another order key, the same profile) and fails after eight,
    to be retried after what follows it (or answered 500 when that repeats)."""
    world = await a_world()
    ada = await world.profile_id("ada@example.com")
    bump = import_command("ada@example.com", data={"age": {"action": "incr", "value": 1}})
    by_id = import_command(None, matching="profile_id", profile_id=ada, data={"city": "Lima"})
    batch = [envelope(bump, f"m{n}") for n in range(10)] + [envelope(by_id, "last")]
    outcomes = await run(world.imports(), batch)
    assert sequential(outcomes) == [0] * 11


@pytest.mark.xfail(strict=True, reason="applied twice (SPEC §9): remove this mark once fixed")
async def test_finding_more_than_sixteen_commands_on_a_profile_then_a_crash() -> None:
    """Markers are pruned to the newest 16 per profile; since a batch may hold any number of
    commands on one profile (d21774b), the next owner after a crash (or the same one, running
    the batch again after a database outage) finds no marker of the first ones and applies
    them again."""
    world = await a_world()
    ada = await world.profile_id("ada@example.com", age=0)
    bump = import_command("ada@example.com", data={"age": {"action": "incr", "value": 1}})
    batch = [envelope(bump, f"m{n}") for n in range(20)]
    await world.imports().process(batch)  # written; dies before `complete`
    world.outlive_leases()
    await run(world.imports(), batch)  # the broker redelivers the batch
    assert world.fields(ada)["age"] == 20, "the first four increments applied twice"
