"""`ProfileStore`: writes land once, only on the profile as read, and unique keys have one owner."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.contract.backends import Backend
from tests.contract.writes import DB, LANDED, created, email_key, profile_write, read
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.ports import Stores
from worker.domain.shared.profiles import FieldChanges, unique_key


async def test_a_creation_is_read_back_with_its_claims(stores: Stores) -> None:
    profile_id = new_profile_id()
    key = email_key("ada@example.com")
    write = profile_write(
        profile_id,
        command_id="c-create",
        changes=FieldChanges(
            set={"email": "ada@example.com", "city": "Oslo"},
            inc={"age": 3},
            add_tags={"interests": ["a", "b"]},
        ),
        claims={key: None},
        subscriptions={"slot1": {"key": "10:sub:email:100:ada@example.com", "status": "x"}},
    )

    assert await stores.profiles.write([write]) == ["applied"]

    profile = await read(stores, profile_id)
    assert (profile.profile_id, profile.db_id, profile.account_id) == (profile_id, DB, 1)
    assert profile.fields == {
        "email": "ada@example.com",
        "city": "Oslo",
        "age": 3,
        "interests": ["a", "b"],
    }
    assert profile.subscription_keys() == {"10:sub:email:100:ada@example.com"}
    assert await stores.profiles.owners([key, email_key("nobody@example.com")]) == {key: profile_id}
    assert await stores.profiles.count(1) == 1
    assert await stores.profiles.count(2) == 0
    assert await stores.profiles.profile_account(profile_id) == 1
    assert await stores.profiles.profile_account(new_profile_id()) is None
    assert await stores.profiles.profiles(11, [profile_id]) == {}, "scoped by database"


async def test_an_update_applies_every_kind_of_change(stores: Stores) -> None:
    profile = await created(stores, "ada@example.com", city="Oslo", age=1, interests=["a", "b"])
    changes = FieldChanges(
        set={"vip": True}, unset=["city"], inc={"age": 4}, add_tags={"interests": ["b", "c"]}
    )
    slot = {"key": "10:sub:sms:101:+4712345", "status": "subscribed"}
    write = profile_write(
        profile.profile_id, before=profile, changes=changes, subscriptions={"s": slot}
    )

    assert await stores.profiles.write([write]) == ["applied"]

    after = await read(stores, profile.profile_id)
    assert after.fields == {
        "email": "ada@example.com",
        "age": 5,
        "vip": True,
        "interests": ["a", "b", "c"],
    }
    assert after.subscriptions == {"s": slot}


async def test_tags_are_removed_and_a_missing_tags_field_is_added_to(stores: Stores) -> None:
    """One command changes a field one way only (`data` has one entry per field)."""
    tagged = await created(stores, interests=["a", "b", "a"])
    bare = await created(stores)
    remove = FieldChanges(remove_tags={"interests": ["a", "z"]})
    add = FieldChanges(add_tags={"interests": ["x", "y"]})

    statuses = await stores.profiles.write(
        [
            profile_write(tagged.profile_id, before=tagged, changes=remove),
            profile_write(bare.profile_id, before=bare, changes=add),
        ]
    )

    assert statuses == ["applied", "applied"]
    assert (await read(stores, tagged.profile_id)).fields == {"interests": ["b"]}
    assert (await read(stores, bare.profile_id)).fields == {"interests": ["x", "y"]}


async def test_an_update_planned_on_a_stale_read_conflicts(stores: Stores) -> None:
    profile = await created(stores, "ada@example.com", age=1)
    first = profile_write(
        profile.profile_id, before=profile, command_id="c1", changes=FieldChanges(inc={"age": 1})
    )
    second = profile_write(
        profile.profile_id, before=profile, command_id="c2", changes=FieldChanges(inc={"age": 10})
    )

    assert await stores.profiles.write([first]) == ["applied"]
    assert await stores.profiles.write([second]) == ["conflict"]

    fresh = await read(stores, profile.profile_id)
    assert fresh.fields["age"] == 2
    again = replace(second, before=fresh)
    assert await stores.profiles.write([again]) == ["applied"], "planned again on a fresh read"
    assert (await read(stores, profile.profile_id)).fields["age"] == 12


async def test_writes_to_several_profiles_report_each_status(stores: Stores) -> None:
    one = await created(stores, "one@example.com", age=1)
    two = await created(stores, "two@example.com", age=1)
    stale = profile_write(two.profile_id, before=two, changes=FieldChanges(inc={"age": 1}))
    assert await stores.profiles.write([stale]) == ["applied"]

    statuses = await stores.profiles.write(
        [
            profile_write(one.profile_id, before=one, changes=FieldChanges(inc={"age": 1})),
            profile_write(two.profile_id, before=two, changes=FieldChanges(inc={"age": 1})),
        ]
    )

    assert statuses == ["applied", "conflict"]
    assert (await read(stores, one.profile_id)).fields["age"] == 2
    assert (await read(stores, two.profile_id)).fields["age"] == 2


async def test_a_creation_under_an_existing_id_conflicts(stores: Stores) -> None:
    profile = await created(stores, age=1)
    again = profile_write(profile.profile_id, command_id="other", changes=FieldChanges(set={}))

    assert await stores.profiles.write([again]) == ["conflict"]
    assert (await read(stores, profile.profile_id)).fields == {"age": 1}


async def test_a_unique_key_of_another_live_profile_is_not_taken(stores: Stores) -> None:
    owner = await created(stores, "ada@example.com")
    key = email_key("ada@example.com")
    intruder = new_profile_id()
    write = profile_write(
        intruder, changes=FieldChanges(set={"email": "ada@example.com"}), claims={key: None}
    )

    assert await stores.profiles.write([write]) == ["conflict"]

    assert await stores.profiles.owners([key]) == {key: owner.profile_id}
    assert await stores.profiles.profiles(DB, [intruder]) == {}
    assert await stores.profiles.count(1) == 1


async def test_two_creations_claiming_one_key_in_one_call_have_one_winner(stores: Stores) -> None:
    key = email_key("ada@example.com")
    first, second = new_profile_id(), new_profile_id()
    writes = [
        profile_write(
            pid, changes=FieldChanges(set={"email": "ada@example.com"}), claims={key: None}
        )
        for pid in (first, second)
    ]

    assert await stores.profiles.write(writes) == ["applied", "conflict"]
    assert await stores.profiles.owners([key]) == {key: first}


async def test_a_stale_owner_s_key_is_taken_over(stores: Stores) -> None:
    """A key is taken over by naming the owner it had when read (the domain names one that no
    longer holds the value); naming anyone else (the key moved on since) conflicts."""
    key = unique_key(DB, "loyalty_id", "L-1")
    stale = new_profile_id()
    setup = profile_write(
        stale, changes=FieldChanges(set={"loyalty_id": "L-1"}), claims={key: None}
    )
    assert await stores.profiles.write([setup]) == ["applied"]
    taker, late = new_profile_id(), new_profile_id()
    loyalty = FieldChanges(set={"loyalty_id": "L-1"})

    wrong = profile_write(late, changes=loyalty, claims={key: taker})
    assert await stores.profiles.write([wrong]) == ["conflict"]
    right = profile_write(taker, changes=loyalty, claims={key: stale})
    assert await stores.profiles.write([right]) == ["applied"]
    assert await stores.profiles.owners([key]) == {key: taker}

    again = profile_write(new_profile_id(), changes=loyalty, claims={key: stale})
    assert await stores.profiles.write([again]) == ["conflict"], "the key moved on"
    assert await stores.profiles.owners([key]) == {key: taker}


async def test_a_key_claimed_again_by_its_owner_is_kept(stores: Stores) -> None:
    profile = await created(stores, "ada@example.com")
    key = email_key("ada@example.com")
    write = profile_write(profile.profile_id, before=profile, claims={key: None})

    assert await stores.profiles.write([write]) == ["applied"]
    assert await stores.profiles.owners([key]) == {key: profile.profile_id}


async def test_a_changed_unique_value_releases_the_old_key(stores: Stores) -> None:
    profile = await created(stores, "old@example.com")
    old, new = email_key("old@example.com"), email_key("new@example.com")
    write = profile_write(
        profile.profile_id,
        before=profile,
        changes=FieldChanges(set={"email": "new@example.com"}),
        claims={new: None},
        releases=(old,),
    )

    assert await stores.profiles.write([write]) == ["applied"]

    assert await stores.profiles.owners([old, new]) == {new: profile.profile_id}
    assert (await read(stores, profile.profile_id)).fields["email"] == "new@example.com"


async def test_a_release_never_drops_another_profile_s_key(stores: Stores) -> None:
    owner = await created(stores, "ada@example.com")
    other = await created(stores, "bob@example.com")
    key = email_key("ada@example.com")
    write = profile_write(other.profile_id, before=other, releases=(key,))

    assert await stores.profiles.write([write]) == ["applied"]
    assert await stores.profiles.owners([key]) == {key: owner.profile_id}


async def test_a_write_that_conflicts_releases_nothing(stores: Stores) -> None:
    profile = await created(stores, "old@example.com")
    old = email_key("old@example.com")
    bump = profile_write(profile.profile_id, before=profile, changes=FieldChanges(set={"age": 1}))
    assert await stores.profiles.write([bump]) == ["applied"]
    stale = profile_write(profile.profile_id, before=profile, releases=(old,))

    assert await stores.profiles.write([stale]) == ["conflict"]
    assert await stores.profiles.owners([old]) == {old: profile.profile_id}


async def test_the_same_command_never_applies_twice(stores: Stores) -> None:
    profile = await created(stores, "ada@example.com", age=1)
    write = profile_write(
        profile.profile_id,
        before=profile,
        command_id="c-incr",
        changes=FieldChanges(inc={"age": 5}),
    )

    assert await stores.profiles.write([write]) == ["applied"]
    assert await stores.profiles.write([write]) in LANDED, "its mark is on the profile"

    assert (await read(stores, profile.profile_id)).fields["age"] == 6


async def test_a_creation_written_again_is_applied_once(stores: Stores) -> None:
    profile_id = new_profile_id()
    key = email_key("ada@example.com")
    write = profile_write(
        profile_id,
        command_id="c-new",
        changes=FieldChanges(set={"email": "ada@example.com"}, inc={"age": 1}),
        claims={key: None},
    )

    assert await stores.profiles.write([write]) == ["applied"]
    assert await stores.profiles.write([write]) in LANDED

    assert (await read(stores, profile_id)).fields["age"] == 1
    assert await stores.profiles.count(1) == 1


async def test_the_same_command_planned_on_a_fresh_read_is_not_applied_again(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """A new owner that read the profile after the dead owner's write landed (its lease ran
    out while the write was in flight) must not apply the command a second time: the port
    promises "never a second time for the same command_id"."""
    stores = backend.stores
    profile = await created(stores, "ada@example.com", age=1)
    write = profile_write(
        profile.profile_id,
        before=profile,
        command_id="c-incr",
        changes=FieldChanges(inc={"age": 5}),
    )
    assert await stores.profiles.write([write]) == ["applied"]
    fresh = await read(stores, profile.profile_id)

    assert await stores.profiles.write([replace(write, before=fresh)]) == ["landed_before"]

    assert (await read(stores, profile.profile_id)).fields["age"] == 6


async def test_writes_without_a_command_id_always_apply(stores: Stores) -> None:
    profile = await created(stores, age=0)
    for _ in range(3):
        current = await read(stores, profile.profile_id)
        write = profile_write(
            profile.profile_id, before=current, changes=FieldChanges(inc={"age": 1})
        )
        assert await stores.profiles.write([write]) == ["applied"]

    assert (await read(stores, profile.profile_id)).fields["age"] == 3


async def test_many_commands_on_one_profile_each_apply_once(stores: Stores) -> None:
    """Many commands in a row on one profile: each applies once, and the latest is still
    recognized when written again."""
    profile = await created(stores, age=0)
    write = None
    for number in range(20):
        current = await read(stores, profile.profile_id)
        write = profile_write(
            profile.profile_id,
            before=current,
            command_id=f"c-{number}",
            changes=FieldChanges(inc={"age": 1}),
        )
        assert await stores.profiles.write([write]) == ["applied"]
    assert write is not None

    assert await stores.profiles.write([write]) in LANDED
    assert (await read(stores, profile.profile_id)).fields["age"] == 20


async def test_matching_by_equality_array_element_and_all_tags(stores: Stores) -> None:
    ada = await created(
        stores, city="Oslo", phones=["+4711111", "+4722222"], interests=["a", "b", "c"]
    )
    bob = await created(stores, city="Oslo", phones=["+4733333"], interests=["a"], vip=True)
    await created(stores, city="Bergen", age=1)
    profiles = stores.profiles

    assert sorted(await profiles.matching(DB, "city", "Oslo", all_of=False)) == sorted(
        [ada.profile_id, bob.profile_id]
    )
    assert await profiles.matching(DB, "city", "oslo", all_of=False) == []
    assert await profiles.matching(DB, "phones", "+4722222", all_of=False) == [ada.profile_id]
    assert await profiles.matching(DB, "interests", ["a", "c"], all_of=True) == [ada.profile_id]
    assert sorted(await profiles.matching(DB, "interests", ["a"], all_of=True)) == sorted(
        [ada.profile_id, bob.profile_id]
    )
    assert await profiles.matching(DB, "interests", ["a", "z"], all_of=True) == []
    assert await profiles.matching(DB, "vip", True, all_of=False) == [bob.profile_id]
    assert await profiles.matching(DB, "age", True, all_of=False) == [], "a bool is no number"
    assert await profiles.matching(11, "city", "Oslo", all_of=False) == [], "scoped by database"


async def test_matching_reads_at_most_two_profiles(stores: Stores) -> None:
    for _ in range(4):
        await created(stores, city="Oslo")

    assert len(await stores.profiles.matching(DB, "city", "Oslo", all_of=False)) == 2
