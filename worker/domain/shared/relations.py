"""Relations between profiles (SPEC §5) as they are stored, and what a write of one carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.contract.matching import MatchingKeys

Value = bool | int | float
INT64 = range(-(2**63), 2**63)
DEFAULT_PRIORITY = 50


@dataclass(frozen=True)
class ProfileKeys:
    """One side's matching keys in the database the relation type gives it."""

    db_id: int
    matching: str
    email: str | None = None
    phone: str | None = None
    profile_id: str | None = None
    field_name: str | None = None
    field_value: Any = None
    provider: str | None = None
    subscription_id: str | None = None
    resource_id: int | None = None

    @classmethod
    def of(cls, keys: MatchingKeys, db_id: int) -> ProfileKeys:
        return cls(
            db_id=db_id,
            matching=keys.mode,
            email=keys.email,
            phone=keys.phone,
            profile_id=keys.profile_id,
            field_name=keys.field_name,
            field_value=keys.field_value,
            provider=keys.provider,
            subscription_id=keys.subscription_id,
            resource_id=keys.resource_id,
        )


@dataclass(frozen=True)
class Relation:
    """A relation as stored: from profile B (initiator) to profile A (recipient)."""

    relation_id: int
    rel_id: int
    account_id: int
    db_a: int
    db_b: int
    profile_id_a: str
    profile_id_b: str
    props: dict[str, Value] = field(default_factory=dict)
    relation_to_a: str | None = None
    relation_to_b: str | None = None
    priority: int = DEFAULT_PRIORITY
    stamp: Any = field(default=None, compare=False, repr=False)
    """The store's note of which stored state this is (see `Profile.stamp`)."""

    @property
    def key(self) -> str:
        return relation_key(self.rel_id, self.profile_id_a, self.profile_id_b)


def relation_key(rel_id: int, profile_id_a: str, profile_id_b: str) -> str:
    """The claim key that makes (type, A, B) one relation."""
    return f"{rel_id}:{profile_id_a}:{profile_id_b}"


WriteKind = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class RelationWrite:
    """What one command does to one relation, with its answer and events.

    `relation` is the state after the write (for a delete, the state it removes); `before` is
    the relation as the plan read it (None: a creation). `command_id` as for profiles.
    """

    kind: WriteKind
    relation: Relation
    before: Relation | None
    command_id: str | None
    result: ResultModel
    events: tuple[Event, ...] = ()
