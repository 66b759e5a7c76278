"""The pure rules of each relation action (SPEC §5): which type, which weights, what after."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from worker.contract.relations import RelationCommand
from worker.domain.shared.catalog import RelationType
from worker.domain.shared.relations import INT64, Relation, Value
from worker.errors import Ambiguous, InvalidCommand, NotFound


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
