"""Relation commands and their results (SPEC §5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from worker.contract.common import CommandModel, Id, ResultModel, describe_validation_error
from worker.contract.matching import MatchingKeys
from worker.errors import InvalidCommand

Action = Literal["attach", "detach", "strengthen", "edit"]
Number = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | StrictFloat
Weight = StrictBool | Number
"""A property value: a number (int64 or float) or a bool, as the relation type declares."""
Label = Annotated[StrictStr, Field(max_length=256)]
Priority = Annotated[StrictInt, Field(ge=0, le=100)]


class RelationCommand(CommandModel):
    """One command on queue `relations`."""

    action: Action
    account_id: Id
    rel_id: Id | None = None
    profile_a: MatchingKeys | None = None
    profile_b: MatchingKeys | None = None
    relation_id: Id | None = None
    weights: dict[str, Weight] | None = None
    relation_to_a: Label | None = None
    relation_to_b: Label | None = None
    priority: Priority | None = None
    feedback_id: StrictStr | None = None
    token: StrictStr | None = None

    @model_validator(mode="after")
    def _addressed(self) -> RelationCommand:
        """A relation is addressed by `relation_id`, or by `rel_id` and both profiles."""
        if self.action == "attach" and self.relation_id is not None:
            raise ValueError("'attach' addresses profiles, not 'relation_id'")
        if self.relation_id is None:
            for name in ("rel_id", "profile_a", "profile_b"):
                if getattr(self, name) is None:
                    raise ValueError(f"missing parameter '{name}' (or 'relation_id')")
        if self.action == "attach" and self.weights is None:
            raise ValueError("missing parameter 'weights'")
        if self.action == "detach":
            given = [
                name
                for name in ("weights", "relation_to_a", "relation_to_b", "priority")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(f"parameter '{given[0]}' is not allowed with 'detach'")
        return self


class RelationResult(ResultModel):
    """The answer to one relation command."""

    action: str | None = None
    rel_id: int | None = None
    relation_id: int | None = None
    profile_a: str | None = None
    profile_b: str | None = None
    props: dict[str, Any] | None = None
    created: bool = False


def decode_relation(raw: dict[str, Any]) -> RelationCommand:
    try:
        return RelationCommand.model_validate(raw)
    except ValidationError as exc:
        raise InvalidCommand(describe_validation_error(exc)) from None
