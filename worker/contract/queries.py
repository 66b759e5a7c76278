"""Read requests on queue `relations_query` and their answers (SPEC §6)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StrictStr, ValidationError, model_validator

from worker.contract.common import Id, ResultModel, describe_validation_error
from worker.contract.matching import MatchingKeys
from worker.errors import InvalidCommand

Method = Literal["get", "get_counter", "list", "single"]
SUCCESS = "Successful operation"


class RelationQuery(MatchingKeys):
    """One query; the A profile's matching keys sit at top level (`get`, `get_counter`)."""

    method: Method
    account_id: Id
    rel_id: Id | None = None
    contact: StrictStr | None = None
    relation_id: Id | None = None
    limit: Annotated[int, Field(strict=True, ge=1, le=1_000)] = 100
    cursor: StrictStr | None = None
    top_n: Annotated[int, Field(strict=True, ge=1, le=1_000)] = 10
    feedback_id: StrictStr | None = None
    token: StrictStr | None = None

    @property
    def mode(self) -> str:
        """The A profile is addressed by `profile_id` unless `matching` says otherwise."""
        return self.matching or "profile_id"

    @model_validator(mode="after")
    def _needs(self) -> RelationQuery:
        needed = {"get": "rel_id", "get_counter": "rel_id", "list": "contact"}
        name = needed.get(self.method, "relation_id")
        if getattr(self, name) is None:
            raise ValueError(f"missing parameter '{name}' for method '{self.method}'")
        return self


class QueryAnswer(ResultModel):
    """Every answer: `data` on success, `error`/`error_text` always.

    Only the fields set are sent, so an answer carries what applies to its method; whoever
    builds one sets `error` and `error_text` too.
    """

    omit_unset: ClassVar[bool] = True
    error_text: str = SUCCESS
    data: Any = None
    total_count: int | None = None
    next_cursor: str | None = None


def decode_query(raw: dict[str, Any]) -> RelationQuery:
    try:
        return RelationQuery.model_validate(raw)
    except ValidationError as exc:
        raise InvalidCommand(describe_validation_error(exc)) from None
