"""Shared pieces of the wire format."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from worker.errors import InvalidCommand

Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
"""Account, database, resource and relation ids: non-negative and within BSON's int64."""


class CommandModel(BaseModel):
    """A command as producers send it: frozen, and unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class SentModel(BaseModel):
    """A message the worker sends (a result or an event), a model until it is sent.

    `encode` gives its body on the wire and `document` the same JSON as a dict, for the
    inbox: one serialization for both, so a recorded answer is the one that was sent.
    """

    model_config = ConfigDict(frozen=True)

    omit_none: ClassVar[bool] = False
    """Leave out fields that are None."""
    omit_unset: ClassVar[bool] = False
    """Leave out fields that were never set."""

    def encode(self) -> bytes:
        return self.__pydantic_serializer__.to_json(
            self, exclude_none=self.omit_none, exclude_unset=self.omit_unset
        )

    def document(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json", exclude_none=self.omit_none, exclude_unset=self.omit_unset
        )


class ResultModel(SentModel):
    """Every result carries `error` and `error_text`, and echoes the command's identifiers."""

    error: int = 0
    error_text: str = ""
    feedback_id: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None


def parse_json_object(body: bytes, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or InvalidCommand saying why not."""
    if len(body) > max_bytes:
        raise InvalidCommand(f"message is {len(body)} bytes, over the limit of {max_bytes}")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidCommand(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidCommand("body must be a JSON object")
    if body.count(b"{") + body.count(b"[") > MAX_NESTING and nesting(value) > MAX_NESTING:
        raise InvalidCommand(f"body is nested deeper than {MAX_NESTING} levels")
    if _LONG_DIGITS.search(body):
        _refuse_wide_integers(body)
    return value


MAX_NESTING = 32
"""Objects and arrays in arrays and objects: deeper bodies are refused (MongoDB stores at most
100 levels, and recursive checks must stay far from Python's limit)."""
_LONG_DIGITS = re.compile(rb"\d{19,}")


def nesting(value: Any) -> int:
    """How deep objects and arrays go in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _refuse_wide_integers(body: bytes) -> None:
    """orjson reads an integer literal beyond the 64-bit range as a float, losing digits (from
    19 digits on, negative ones included); the standard parser sees the literal, so a body
    with such a run of digits is read again."""

    def checked(literal: str) -> int:
        number = int(literal)
        if not -(2**63) <= number < 2**63:
            raise InvalidCommand(f"integer out of the 64-bit range: {literal[:30]}...")
        return number

    json.loads(body, parse_int=checked)


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem pydantic found, naming the field, in one line."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return f"unknown parameter '{location}'"
    if first["type"] == "value_error":
        return str(first.get("ctx", {}).get("error", first["msg"]))
    if first["type"] == "missing":
        return f"missing parameter '{location}'"
    return f"invalid parameter '{location}': {first['msg']}"


def feedback_id_of(raw: dict[str, Any]) -> str | None:
    """`feedback_id` of a command that may fail validation, so even a 400 can echo it."""
    value = raw.get("feedback_id")
    return value if isinstance(value, str) else None
