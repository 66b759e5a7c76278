"""Relations between profiles (SPEC §5): what is stored, and the pure rules of each action."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from worker.contract.matching import MatchingKeys
from worker.contract.relations import RelationCommand
from worker.domain.catalog import RelationType
from worker.errors import Ambiguous, InvalidCommand, NotFound

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
    result: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def relation_type_of(
    types: Sequence[RelationType], rel_id: int | None, account_id: int
) -> RelationType:
    """The account's relation type `rel_id`, or 404."""
    for rtype in types:
        if rtype.rel_id == rel_id:
            return rtype
    raise NotFound(f"relation type {rel_id} not found in account {account_id}")


def checked_weights(rtype: RelationType, weights: dict[str, Value] | None) -> dict[str, Value]:
    """The weights, if every one is a declared property of the right type; else 400."""
    declared = {prop.name: prop.type for prop in rtype.properties}
    for name, value in (weights or {}).items():
        kind = declared.get(name)
        if kind is None:
            raise InvalidCommand(
                f"property '{name}' is not declared by relation type {rtype.rel_id}"
            )
        if (kind == "bool") != isinstance(value, bool):
            raise InvalidCommand(f"property '{name}' must be a {kind}")
    return dict(weights or {})


def new_values(
    command: RelationCommand, weights: dict[str, Value], current: Relation | None
) -> dict[str, Value]:
    """Property values after the command: strengthen adds numbers and sets bools, the other
    actions replace the values given and keep the rest."""
    values = dict(current.props) if current else {}
    for name, value in weights.items():
        if command.action == "strengthen" and not isinstance(value, bool):
            base = values.get(name, 0)
            total = (0 if isinstance(base, bool) else base) + value
            if isinstance(total, int) and total not in INT64:
                raise InvalidCommand(f"property '{name}' would leave the 64-bit integer range")
            values[name] = total
        else:
            values[name] = value
    return values


def after(command: RelationCommand, weights: dict[str, Value], current: Relation) -> Relation:
    """The relation after an attach, strengthen or edit of `current` (or of a new one)."""
    return replace(
        current,
        props=new_values(command, weights, current),
        relation_to_a=(
            current.relation_to_a if command.relation_to_a is None else command.relation_to_a
        ),
        relation_to_b=(
            current.relation_to_b if command.relation_to_b is None else command.relation_to_b
        ),
        priority=current.priority if command.priority is None else command.priority,
    )


def refuse_if_inapplicable(command: RelationCommand, current: Relation | None) -> None:
    """409 for attaching an existing relation, 404 for detaching a missing one."""
    if command.action == "attach" and current is not None:
        raise Ambiguous(f"relation already exists (relation_id {current.relation_id})")
    if command.action == "detach" and current is None:
        raise NotFound("relation not found")
