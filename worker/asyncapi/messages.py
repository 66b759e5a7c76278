"""`components.messages` and the schemas of their AMQP properties and headers: what the
worker reads from a command's envelope and what it sets on answers and on copies."""

from __future__ import annotations

from typing import Any

from worker.asyncapi.names import event_id
from worker.asyncapi.schemas import EVENTS, ref, string, strings
from worker.runtime.replies import ATTEMPT_HEADER, ORIGINAL_USER_HEADER, REASON_HEADER
from worker.settings import Settings

AMQP_BINDING = "0.3.0"
JSON_CONTENT = "application/json"

COMMAND_PROPERTIES: dict[str, str] = {
    "message_id": "AMQP property: the deduplication key (SPEC §9), echoed in the result.",
    "correlation_id": "AMQP property: echoed as the answer's `correlation_id` property.",
    "reply_to": "AMQP property: the answer goes to this queue, not to the result queue.",
    "user_id": "AMQP property, validated by RabbitMQ: a broker user bound to the account in "
    "the catalog needs no `token` (SPEC §8).",
}
"""The AMQP properties of a command that the worker reads."""

_ANSWERS = (
    ("importResult", "ImportResult"),
    ("relationResult", "RelationResult"),
    ("queryAnswer", "QueryAnswer"),
)
"""Message name → the model of its payload."""


def messages() -> dict[str, Any]:
    """Every message, by the name channels and operations refer to it with."""
    return _commands() | _answers() | _events()


def _commands() -> dict[str, Any]:
    command, copy = "CommandProperties", "CopyHeaders"
    return {
        "importCommand": _message("Profile import (SPEC §4).", ref("ImportCommand"), command),
        "flatImportCommand": _message(
            "Profile import, flat form (SPEC §4.1).", ref("FlatImportCommand"), command
        ),
        "relationCommand": _message("Relation command (SPEC §5).", ref("RelationCommand"), command),
        "relationQuery": _message(
            "Relation query (SPEC §6).", ref("RelationQuery"), "QueryProperties", correlated=True
        ),
        "retriedCommand": _message("A command sent back for a later try, unchanged.", {}, copy),
        "deadLetter": _message("A command put aside, unchanged (maybe not JSON).", {}, copy),
    }


def _answers() -> dict[str, Any]:
    answers = {}
    for name, model in _ANSWERS:
        summary = f"{model}: success (`error` 0) or an error of SPEC §3."
        payload = {"allOf": [ref(model), ref("Error")]}  # `error` as SPEC §3 fixes it
        answers[name] = _message(summary, payload, "AnswerProperties", correlated=True)
    return answers


def _events() -> dict[str, Any]:
    """The `Event` model, narrowed per routing key to the fields that kind always has."""
    events = {}
    for routing_key, (summary, fields) in EVENTS.items():
        required = ["event", "occurred_at", "account_id", *fields]
        kind = {"properties": {"event": {"const": routing_key}}, "required": required}
        events[event_id(routing_key)] = _message(summary, {"allOf": [ref("Event"), kind]})
    return events


def _message(
    summary: str, payload: dict[str, Any], headers: str | None = None, *, correlated: bool = False
) -> dict[str, Any]:
    message: dict[str, Any] = {"summary": summary, "contentType": JSON_CONTENT}
    if headers:
        message["headers"] = ref(headers)
    message["payload"] = payload
    if correlated:
        message["correlationId"] = {"location": "$message.header#/correlation_id"}
    return message | {"bindings": amqp({})}


def header_schemas(settings: Settings) -> dict[str, Any]:
    """The AMQP properties and headers of each message, as `components.schemas`."""
    answer = "AMQP property: the command's `correlation_id`, else its `message_id`."
    return {
        "CommandProperties": _headers(strings(COMMAND_PROPERTIES)),
        "QueryProperties": _headers(strings(COMMAND_PROPERTIES), "reply_to", "correlation_id"),
        "AnswerProperties": _headers({"correlation_id": string(answer)}),
        "CopyHeaders": _headers(_copy_headers(settings), ATTEMPT_HEADER, REASON_HEADER),
    }


def _copy_headers(settings: Settings) -> dict[str, Any]:
    """A copy keeps the command's properties and headers, and has these."""
    kept = ("message_id", "correlation_id", "reply_to")
    return {
        **strings({name: COMMAND_PROPERTIES[name] for name in kept}),
        ATTEMPT_HEADER: {
            "type": "integer",
            "minimum": 0,
            "maximum": settings.retry_max_attempts + 1,
            "description": "Header: how many deliveries of the command failed transiently.",
        },
        REASON_HEADER: string("Header: why the command was sent back or put aside.")
        | {"maxLength": 512},
        ORIGINAL_USER_HEADER: string(
            "Header: the producer's validated `user_id`. Copies are published as the worker's "
            "own broker user, and the worker trusts this header only on such copies."
        ),
    }


def _headers(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    return schema | {"required": list(required)} if required else schema


def amqp(binding: dict[str, Any]) -> dict[str, Any]:
    """An AMQP binding object, stamped with the binding version the document follows."""
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING}}
