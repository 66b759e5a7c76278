"""Turn an import's `data` into field changes, checked against the database's schema."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from worker.contract.common import describe_validation_error
from worker.contract.imports import FieldUpdate
from worker.domain.shared.catalog import FieldSpec
from worker.domain.shared.coercion import check_keys, coerce, to_tags
from worker.domain.shared.profiles import FieldChanges
from worker.errors import InvalidCommand

_NUMERIC = frozenset({"int", "float"})


def plan_changes(schema: dict[str, FieldSpec], data: dict[str, Any]) -> FieldChanges:
    """Validate every field of `data` and sort it into set/unset/incr/add/delete buckets."""
    changes = FieldChanges()
    for name, raw in data.items():
        if name == "subscriptions":
            raise InvalidCommand("field 'subscriptions' is not available in this version")
        check_keys({name: None}, name)
        spec = schema.get(name)
        if spec is None:
            raise InvalidCommand(f"unknown field '{name}'")
        _apply(changes, spec, _as_update(name, raw))
    return changes


def _as_update(name: str, raw: Any) -> FieldUpdate:
    """A `{"action", "value"}` object is a functional update; anything else means `set`."""
    if isinstance(raw, dict) and "action" in raw and set(raw) <= {"action", "value"}:
        try:
            return FieldUpdate.model_validate(raw)
        except ValidationError as exc:
            raise InvalidCommand(f"field '{name}': {describe_validation_error(exc)}") from None
    return FieldUpdate(action="set", value=raw)


def _apply(changes: FieldChanges, spec: FieldSpec, update: FieldUpdate) -> None:
    name = spec.name
    if update.action == "set":
        if update.value is None:
            raise InvalidCommand(f"field '{name}': null cannot be set, use action 'unset'")
        changes.set[name] = coerce(spec, update.value)
    elif update.action == "unset":
        if spec.type == "email":
            raise InvalidCommand(f"field '{name}': an email field cannot be unset")
        changes.unset.append(name)
    elif update.action == "incr":
        if spec.type not in _NUMERIC:
            raise InvalidCommand(f"field '{name}': 'incr' needs an int or float field")
        changes.inc[name] = coerce(spec, update.value)
    else:
        if spec.type != "tags":
            raise InvalidCommand(f"field '{name}': '{update.action}' needs a tags field")
        bucket = changes.add_tags if update.action == "add" else changes.remove_tags
        bucket[name] = to_tags(spec, update.value)
