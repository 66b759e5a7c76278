"""What the chaos suite found where the worker departed from the reference model, each reduced
to a minimal case on the real store (`world`, `tests/conftest.py`) and kept as a regression
test. The processors run as a worker process drives them: `drained` hands the commands a batch
defers back first in the next batch, as the consumer does (they stay unacked in between).
"""

from __future__ import annotations

import pytest

from tests.support import TOKEN
from tests.unit.harness import (
    CrashingWrites,
    WorkerDied,
    World,
    drained,
    envelope,
    import_command,
    relation_command,
    result_of,
    run,
)
from worker.domain.envelope import Deferred, GaveUp, Outcome, Refused


def codes(outcomes: list[Outcome]) -> list[int]:
    """Each command's code (500: not answered)."""
    return [int(result_of(o).get("error", 500)) for o in outcomes]


async def test_a_burst_on_one_profile_applies_in_order_over_several_batches(world: World) -> None:
    """Ten increments by email, then an update by id: a batch writes at most eight commands
    on one profile; the rest come first in the next batch, the update by id last."""
    ada = await world.profile_id("ada@example.com", age=0)
    bump = import_command("ada@example.com", data={"age": {"action": "incr", "value": 1}})
    by_id = import_command(None, matching="profile_id", profile_id=ada, data={"age": 100})
    batch = [envelope(bump, f"m{n}") for n in range(10)] + [envelope(by_id, "last")]

    worker = world.imports()
    first = await run(worker, batch)
    outcomes = await drained(worker, batch)

    assert codes(first) == [0] * 8 + [500] * 3, "eight written, the rest deferred in order"
    assert all(isinstance(o, Deferred) for o in first[8:])
    assert codes(outcomes) == [0] * 11
    assert (await world.fields(ada))["age"] == 100, "the update by id went before an increment"


async def test_a_refusal_does_not_let_a_later_command_on_the_profile_jump_ahead(
    world: World,
) -> None:
    ada = await world.profile_id("ada@example.com")
    bodies = [
        import_command("ada@example.com", data={"nickname": "x"}),  # 400
        import_command("ada@example.com", data={"city": "Oslo"}),
        import_command(None, matching="profile_id", profile_id=ada, data={"city": "Lima"}),
    ]
    outcomes = await drained(world.imports(), [envelope(b) for b in bodies])
    assert codes(outcomes) == [400, 0, 0]
    assert (await world.fields(ada))["city"] == "Lima", (
        "the update by id went before the one by email"
    )


async def test_a_refusal_does_not_let_a_later_relation_command_jump_ahead(world: World) -> None:
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    await run(world.relations(), [envelope(relation_command("attach", ada, shop, weights={}))])
    by_email = {"profile_a": {"email": "ada@example.com"}}
    bodies = [
        relation_command("attach", ada, shop, weights={}),  # 409
        relation_command("strengthen", ada, shop, weights={"weight": 4}),
        relation_command("edit", ada, shop, weights={"weight": 1}, **by_email),
    ]
    outcomes = await drained(world.relations(), [envelope(b) for b in bodies])
    assert codes(outcomes) == [409, 0, 0]
    assert (await world.relations_stored())[0].props == {"weight": 1}, "the edit went first"


async def test_a_unique_value_given_up_earlier_in_a_batch_can_be_taken_later_in_it(
    world: World,
) -> None:
    await world.profile_id("ada@example.com", loyalty_id="L-1")
    bodies = [
        import_command("ada@example.com", data={"loyalty_id": {"action": "unset"}}),
        import_command("bob@example.com", data={"loyalty_id": "L-1"}),
    ]
    outcomes = await drained(world.imports(), [envelope(b) for b in bodies])
    assert codes(outcomes) == [0, 0], "435: Ada held L-1 when the batch was read"


async def test_a_command_a_dead_owner_held_is_not_overtaken_by_a_later_one(world: World) -> None:
    """The worker dies (kill -9) before its write; the broker redelivers its batch and the
    next command to the next owner of the partition: the command the dead owner had written
    ahead is decided again first, on its target, and the later one after it. (Before
    partitions, with command leases: both waited, unacked, until the dead owner's lease
    ended.)"""
    ada = await world.profile_id("ada@example.com")
    oslo = envelope(import_command("ada@example.com", data={"city": "Oslo"}), message_id="m1")
    lima = envelope(import_command("ada@example.com", data={"city": "Lima"}), message_id="m2")
    dying = CrashingWrites(world.ports().profiles, "profiles", after_landing=False)
    with pytest.raises(WorkerDied):
        await world.imports(dying).process([oslo])

    outcomes = await drained(world.imports(), [oslo, lima])

    assert codes(outcomes) == [0, 0]
    assert (await world.fields(ada))["city"] == "Lima", "m1 (Oslo) landed after m2 (Lima)"


async def test_a_change_whose_relation_a_later_detach_removed_is_not_applied_again(
    world: World,
) -> None:
    """The worker dies after its batch's writes landed, before its answers were marked done;
    the next owner finds the strengthen's marker among those the detach kept aside, and
    answers it as recorded instead of creating a new relation."""
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    attach = relation_command("attach", ada, shop, weights={"weight": 1})
    await run(world.relations(), [envelope(attach)])
    batch = [
        envelope(relation_command("strengthen", ada, shop, weights={"weight": 2}), "m1"),
        envelope(relation_command("detach", ada, shop), "m2"),
    ]
    first = await world.relations().process(batch)  # written; dies before `complete`
    again = await run(world.relations(), batch)  # the broker redelivers the batch
    assert result_of(again[0]) == result_of(first[0]), "m1 answered as it was the first time"
    assert await world.relations_stored() == [], "m1 created a second relation after the detach"


async def test_more_than_sixteen_commands_on_a_profile_then_a_crash_apply_once(
    world: World,
) -> None:
    """Markers are pruned to the newest 16 per profile; a batch writes at most eight commands
    on one profile, so the next owner after a crash before `complete` finds the marker of
    each one that landed."""
    ada = await world.profile_id("ada@example.com", age=0)
    bump = import_command("ada@example.com", data={"age": {"action": "incr", "value": 1}})
    batch = [envelope(bump, f"m{n}") for n in range(20)]
    await world.imports().process(batch)  # written; dies before `complete`
    outcomes = await drained(world.imports(), batch)  # the broker redelivers the batch
    assert codes(outcomes) == [0] * 20
    assert (await world.fields(ada))["age"] == 20, "an increment applied twice"


async def test_a_command_given_up_on_answers_its_500_to_every_later_copy(world: World) -> None:
    """Its retries spent, a command is answered 500; a copy published later gets that answer
    from the inbox instead of being decided afresh (and answered differently)."""
    oslo = envelope(import_command("ada@example.com", data={"city": "Oslo"}), message_id="m1")
    failing = CrashingWrites(world.ports().profiles, "profiles", after_landing=False)
    worker = world.imports(failing)
    with pytest.raises(WorkerDied):
        await worker.process([oslo])
    text = "internal error after 4 attempts: the worker died around its write"
    await worker.complete([GaveUp(worker.failure(oslo, 500, text), text)])

    [copy] = await run(world.imports(), [oslo])

    assert result_of(copy)["error"] == 500
    assert result_of(copy)["error_text"] == text
    assert await world.profile_count() == 0, "the copy was decided afresh"


async def test_a_refusal_is_answered_as_decided_after_a_crash_that_follows_later_writes(
    world: World,
) -> None:
    """A `detach` refused 404 in a batch whose later `strengthen` then creates the relation:
    the worker dies right after that write; the next owner answers the detach 404 as it was
    decided, instead of deciding it again and removing what the strengthen made."""
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    await run(world.relations(), [envelope(relation_command("attach", ada, shop, weights={}))])
    batch = [
        envelope(relation_command("detach", ada, shop), "m1"),
        envelope(relation_command("detach", ada, shop), "m2"),  # 404 in the second round
        envelope(relation_command("strengthen", ada, shop, weights={"weight": 2}), "m3"),
    ]
    dying = CrashingWrites(
        world.ports().relations, "relations", after_landing=True, writes_before=1
    )
    with pytest.raises(WorkerDied):  # the detach in the first round, the strengthen next
        await world.relations(dying).process(batch)
    again = await run(world.relations(), batch)  # the broker redelivers the batch

    assert codes(again) == [0, 404, 0], "the detach was decided again after the strengthen"
    assert [r.props for r in await world.relations_stored()] == [{"weight": 2}]


async def test_a_refusal_recorded_before_a_failed_write_is_sent_with_its_dead_letter(
    world: World,
) -> None:
    """A body that is not JSON, refused and recorded before a later write of its batch that
    raises: the consumer runs each command of the batch alone, and the refusal, recorded but
    never sent, is sent with its dead-letter copy, not replayed without it (found by the
    secrets test in a clean-clone CI run)."""
    broken = envelope(b'{"account_id": 1, "token": ', message_id="m1")
    oslo = envelope(import_command("ada@example.com", data={"city": "Oslo"}), message_id="m2")
    failing = CrashingWrites(world.ports().profiles, "profiles", after_landing=False)
    worker = world.imports(failing)
    with pytest.raises(WorkerDied):
        await worker.process([broken, oslo])

    [alone] = await worker.process([broken])

    assert isinstance(alone, Refused), alone
    assert alone.dead_letter, "replayed without its dead-letter copy"
    assert result_of(alone)["error"] == 400


async def test_a_landed_command_is_not_applied_again_after_other_keys_wrote_its_target(
    world: World,
) -> None:
    """With partitions (SPEC §9) one relation is reached by its profiles in one partition and
    by its `relation_id` in another. The owner of the first dies after its strengthen landed,
    before `complete`; the other partition's owner strengthens the relation 16 times meanwhile
    (another key, another process: nothing holds it back); then the next owner of the first
    partition gets the strengthen. Found by `bench.chaos --processes 3 --partitions 4 --keys
    several` (seed 225: 18 writes on the relation in between, the copies answered `weight` 1
    and 8), when per-command markers were pruned past 16; each partition's watermark on the
    relation (`worker.store.fence`) keeps the first partition's last mark whatever the other
    writes."""
    ada = await world.profile_id("ada@example.com")
    shop = await world.profile_id("shop@example.com", db_id=11)
    [attached] = await run(
        world.relations(), [envelope(relation_command("attach", ada, shop, weights={}))]
    )
    relation_id = result_of(attached)["relation_id"]
    bump = {"weight": 1}
    first = envelope(relation_command("strengthen", ada, shop, weights=bump), "m1")
    dying = CrashingWrites(world.ports().relations, "relations", after_landing=True)
    with pytest.raises(WorkerDied):
        await world.relations(dying).process([first])
    by_id = {"action": "strengthen", "account_id": 1, "relation_id": relation_id}
    others = [envelope({**by_id, "token": TOKEN, "weights": bump}, f"o{n}") for n in range(16)]
    for other in others:  # one at a time, as another partition's batches go
        assert codes(await run(world.relations(partition="unit.partition.1"), [other])) == [0]

    again = await drained(world.relations(), [first])

    assert codes(again) == [0]
    assert [r.props for r in await world.relations_stored()] == [{"weight": 17}], "m1 applied twice"
