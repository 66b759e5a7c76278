"""Write intents as the domain builds them, shortened for the contract tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.contract.events import Event
from worker.contract.imports import ImportResult
from worker.contract.relations import RelationResult
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.ports import Stores
from worker.domain.shared.profiles import FieldChanges, Profile, ProfileWrite, unique_key
from worker.domain.shared.relations import Relation, RelationWrite, WriteKind

DB = 10
ACCOUNT = 1
LANDED = (["applied"], ["landed_before"])
"""What writing a command whose effect is already there may report: landed, now or before."""
MOMENT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def email_key(email: str, db_id: int = DB) -> str:
    return unique_key(db_id, "email", email)


def profile_write(
    profile_id: str,
    *,
    before: Profile | None = None,
    command_id: str | None = None,
    changes: FieldChanges | None = None,
    claims: dict[str, str | None] | None = None,
    releases: tuple[str, ...] = (),
    subscriptions: dict[str, dict[str, Any]] | None = None,
    db_id: int = DB,
    account_id: int = ACCOUNT,
) -> ProfileWrite:
    return ProfileWrite(
        command_id=command_id,
        profile_id=profile_id,
        db_id=db_id,
        account_id=account_id,
        before=before,
        changes=changes or FieldChanges(),
        result=ImportResult(profile_id=profile_id, message_id=command_id),
        events=(
            Event(
                event="profile.written",
                occurred_at=MOMENT,
                account_id=account_id,
                profile_id=profile_id,
            ),
        ),
        claims=claims or {},
        releases=releases,
        subscriptions=subscriptions or {},
    )


async def created(stores: Stores, email: str | None = None, **fields: Any) -> Profile:
    """A new profile of database 10 (owning its email's key, if it has one), as read back."""
    profile_id = new_profile_id()
    if email is not None:
        fields["email"] = email
    claims: dict[str, str | None] = {email_key(email): None} if email else {}
    write = profile_write(profile_id, changes=FieldChanges(set=fields), claims=claims)
    assert await stores.profiles.write([write]) == ["applied"]
    return await read(stores, profile_id)


async def read(stores: Stores, profile_id: str, db_id: int = DB) -> Profile:
    return (await stores.profiles.profiles(db_id, [profile_id]))[profile_id]


def relation(
    relation_id: int,
    profile_id_a: str,
    profile_id_b: str,
    *,
    rel_id: int = 500,
    account_id: int = ACCOUNT,
    priority: int = 50,
    **props: bool | int | float,
) -> Relation:
    return Relation(
        relation_id=relation_id,
        rel_id=rel_id,
        account_id=account_id,
        db_a=10,
        db_b=11 if rel_id == 500 else 10,
        profile_id_a=profile_id_a,
        profile_id_b=profile_id_b,
        props=dict(props),
        priority=priority,
    )


def relation_write(
    kind: WriteKind,
    after: Relation,
    before: Relation | None = None,
    command_id: str | None = None,
) -> RelationWrite:
    return RelationWrite(
        kind=kind,
        relation=after,
        before=before,
        command_id=command_id,
        result=RelationResult(relation_id=after.relation_id, message_id=command_id),
        events=(
            Event(
                event=f"relation.{kind}",
                occurred_at=MOMENT,
                account_id=after.account_id,
                relation_id=after.relation_id,
            ),
        ),
    )


async def attached(stores: Stores, profile_id_a: str, profile_id_b: str, **kw: Any) -> Relation:
    """A new relation, as read back."""
    [relation_id] = await stores.relations.new_relation_ids(1)
    new = relation(relation_id, profile_id_a, profile_id_b, **kw)
    assert await stores.relations.write([relation_write("create", new)]) == ["applied"]
    return (await stores.relations.relations_by_ids([relation_id]))[relation_id]
