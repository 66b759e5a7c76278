"""Profile import commands and results (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, ValidationError

from worker.contract.common import CommandModel, Id, ResultModel, describe_validation_error
from worker.contract.matching import MATCHING_MODES, MatchingKeys, MatchingMode
from worker.errors import InvalidCommand


class ImportCommand(MatchingKeys):
    """One `database_import` command in its canonical (`data`) form."""

    account_id: Id
    db_id: Id
    data: dict[str, Any]
    matching: MatchingMode = "email"  # the other matching keys come from MatchingKeys
    update_only: StrictBool = False
    skip_triggers: StrictBool = False
    trigger_id: Id | None = None
    workflow_id: Id | None = None
    feedback_id: StrictStr | None = None
    token: StrictStr | None = None


PARAMETERS: frozenset[str] = frozenset(ImportCommand.model_fields)


class ImportResult(ResultModel):
    """The answer to one import command (SPEC §4.5)."""

    matching_field: str | None = None
    profile_id: str | None = None
    profile_xxh: str | None = None
    created: bool = False
    db_id: int | None = None
    account_id: int | None = None


def decode_import(raw: dict[str, Any]) -> ImportCommand:
    """Validate a parsed body, accepting the flat "quick import" form too (SPEC §4.1)."""
    if "data" not in raw:
        raw = _unflatten(raw)
    try:
        return ImportCommand.model_validate(raw)
    except ValidationError as exc:
        raise InvalidCommand(describe_validation_error(exc)) from None


def _unflatten(raw: dict[str, Any]) -> dict[str, Any]:
    """Move every key that is not a parameter into `data`; `matching` may name a field."""
    params = {key: value for key, value in raw.items() if key in PARAMETERS}
    fields = {key: value for key, value in raw.items() if key not in PARAMETERS}
    if not fields:
        raise InvalidCommand("missing parameter 'data' (or at least one profile field)")
    matching = params.get("matching")
    if isinstance(matching, str) and matching not in MATCHING_MODES:
        params.update(matching="custom", field_name=matching, field_value=fields.get(matching))
    resource_id = params.get("resource_id")
    if resource_id is not None and "subscriptions" not in fields:
        flat = [
            {"resource_id": resource_id, "channel": channel, key: params[key]}
            for key, channel in (("email", "email"), ("phone", "sms"))
            if params.get(key) is not None
        ]
        if flat:
            fields["subscriptions"] = flat
    return {**params, "data": fields}


class SubscriptionInput(CommandModel):
    """One entry of `data.subscriptions` (SPEC §4.4)."""

    resource_id: Id
    channel: Literal["email", "sms", "push"]
    email: StrictStr | None = None
    phone: StrictStr | None = None
    provider: StrictStr | None = None
    subscription_id: StrictStr | None = None
    status: Literal["subscribed", "unsubscribed", "suspended"] | None = None
    priority: Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)] | None = None
    custom_fields: dict[str, Any] | None = None
    cats: list[StrictStr] | None = None


class FieldUpdate(CommandModel):
    """A functional update of one field: `{"action": ..., "value": ...}` (SPEC §4.3)."""

    model_config = CommandModel.model_config | {"strict": False}

    action: Literal["set", "unset", "incr", "add", "delete"] = "set"
    value: Any = Field(default=None)
