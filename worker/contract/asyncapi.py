"""The AsyncAPI 3.0.0 document of SPEC §2 to §7, generated from the contract models and the
topology, so the published description is what the worker decodes, declares and sends.

Operations are the worker's own: it receives commands and sends answers, events and copies of
commands (retries, dead letters). AsyncAPI has one `headers` object per message; here it lists
the AMQP properties the worker reads or sets (`reply_to`, `correlation_id`, …) beside the `x-…`
entries of the headers table, and each description says which is which.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import worker
from worker.contract.common import SentModel
from worker.contract.events import Event
from worker.contract.imports import ImportCommand, ImportResult
from worker.contract.queries import QueryAnswer, RelationQuery
from worker.contract.relations import RelationCommand, RelationResult
from worker.runtime.replies import ATTEMPT_HEADER, ORIGINAL_USER_HEADER, REASON_HEADER
from worker.runtime.topology import Route
from worker.settings import Settings

AMQP_BINDING = "0.3.0"
JSON_CONTENT = "application/json"
PERSISTENT = 2
SCHEMAS = "#/components/schemas/{model}"

MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (ImportCommand, "validation"),
    (RelationCommand, "validation"),
    (RelationQuery, "validation"),
    (ImportResult, "serialization"),
    (RelationResult, "serialization"),
    (QueryAnswer, "serialization"),
    (Event, "serialization"),
)
"""Commands as the worker accepts them; answers and events as it sends them."""

ERROR_CODES: dict[int, str] = {
    0: "success",
    400: "malformed command: not JSON, missing/extra/ill-typed parameter, unknown field, bad "
    "matching mode, forbidden key (`$…`, dotted), oversize; the text names the offending field",
    401: "token required and missing",
    402: "account limit reached (e.g. `max_profiles` on create)",
    403: "token invalid, or not allowed on that account, database or operation",
    404: "account, database, resource, relation type, profile or relation not found",
    409: "more than one profile matched (matching not precise), or attach of an existing relation",
    435: "the write would give a unique field's value that belongs to another profile",
    500: "internal failure that persisted after the retry budget (also dead-lettered)",
}
"""SPEC §3."""

_PROFILE = ("db_id", "profile_id", "profile_xxh")
_RELATION = (
    *("relation_id", "rel_id", "db_a", "db_b", "profile_id_a", "xxh_a", "profile_id_b", "xxh_b"),
    *("props", "priority"),
)
EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "profile.created": ("A profile was created.", (*_PROFILE, "changed_fields")),
    "profile.updated": ("Fields of a profile changed.", (*_PROFILE, "changed_fields")),
    "profile.subscribed": (
        "A subscription of a profile became `subscribed`.",
        (*_PROFILE, "resource_id", "channel", "status"),
    ),
    "relation.attached": ("A relation was created (attach, strengthen, edit).", _RELATION),
    "relation.detached": ("A relation was removed; its last values.", _RELATION),
    "relation.changed": ("Values, labels or priority of a relation changed.", _RELATION),
    "trigger.requested": ("An import asked for a trigger.", (*_PROFILE, "trigger_id")),
    "workflow.requested": ("An import asked for a workflow.", (*_PROFILE, "workflow_id")),
}
"""SPEC §7: routing key → (what happened, the fields such an event always carries besides
`event`, `occurred_at` and `account_id`; `feedback_id` and `message_id` if the command had them)."""

COMMAND_PROPERTIES: dict[str, str] = {
    "message_id": "AMQP property: the deduplication key (SPEC §9), echoed in the result.",
    "correlation_id": "AMQP property: echoed as the answer's `correlation_id` property.",
    "reply_to": "AMQP property: the answer goes to this queue, not to the result queue.",
    "user_id": "AMQP property, validated by RabbitMQ: a broker user bound to the account in "
    "the catalog needs no `token` (SPEC §8).",
}
"""The AMQP properties of a command that the worker reads."""


@dataclass(frozen=True)
class Flow:
    """One command queue: the messages it takes, the answer each gets, where they all go."""

    key: str
    """Stem of the channel and operation ids."""
    route: Route
    commands: tuple[str, ...]
    answer: str
    description: str

    @property
    def commands_id(self) -> str:
        return f"{self.key}{'Commands' if self.route.result_queue else 'Requests'}"

    @property
    def answers_id(self) -> str:
        return f"{self.key}{'Results' if self.route.result_queue else 'Replies'}"


def flows(settings: Settings) -> list[Flow]:
    """The routes of `worker.runtime.topology.routes`, each with its messages."""
    imports = Route(settings.import_queue, settings.import_result_queue)
    relations = Route(settings.relations_queue, settings.relations_result_queue)
    queries = Route(settings.relations_query_queue, None)
    return [
        Flow(
            "import",
            imports,
            ("importCommand", "flatImportCommand"),
            "importResult",
            "Profile import commands (SPEC §4).",
        ),
        Flow(
            "relation",
            relations,
            ("relationCommand",),
            "relationResult",
            "Relation commands (SPEC §5).",
        ),
        Flow(
            "query",
            queries,
            ("relationQuery",),
            "queryAnswer",
            "Read requests (SPEC §6), answered to their `reply_to`; one without it is refused "
            "(400) and dead-lettered.",
        ),
    ]


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The whole document; the same settings give the same document, key for key."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for flow in flows(settings):
        channels |= _flow_channels(flow, settings)
        operations |= _flow_operations(flow, settings)
    for routing_key in EVENTS:
        name = _event_id(routing_key)
        channels[name] = _event_channel(routing_key, settings)
        operations[f"send{_title(name)}"] = _send(name, [name], f"Publish `{routing_key}`.")
    return {
        "asyncapi": "3.0.0",
        "info": _info(),
        "servers": _servers(),
        "defaultContentType": JSON_CONTENT,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _sorted(_model_schemas() | _wire_schemas(settings)),
            "messages": _sorted(_messages()),
        },
    }


def _info() -> dict[str, Any]:
    return {
        "title": "profile-worker",
        "version": worker.__version__,
        "description": "Imports customer profiles and maintains relations between them "
        "from RabbitMQ commands, answers each command with one result and publishes "
        "domain events.\n\nThe contract in prose is SPEC.md (§2 topology, §3 results and "
        "errors, §4 imports, §5 relations, §6 queries, §7 events). This document is "
        "generated from the pydantic models of `worker/contract` by "
        "`profile-worker asyncapi`; do not edit it by hand.",
        "license": {"name": "Apache-2.0"},
    }


def _servers() -> dict[str, Any]:
    """Where the worker connects is deployment data: a variable, not a value."""
    return {
        "production": {
            "host": "{host}",
            "protocol": "amqp",
            "protocolVersion": "0.9.1",
            "description": "The RabbitMQ broker the worker connects to (`PW_AMQP_URL`).",
            "variables": {
                "host": {
                    "description": "Host and port of the broker.",
                    "examples": ["rabbitmq.internal:5672"],
                }
            },
        }
    }


def _flow_channels(flow: Flow, settings: Settings) -> dict[str, Any]:
    route, exchange = flow.route, settings.dead_letter_exchange
    channels = {
        flow.commands_id: _queue_channel(
            route.queue,
            flow.commands,
            f"{flow.description} Rejected deliveries dead-letter to `{route.dead_queue}` "
            f"through `{exchange}`.",
        ),
        flow.answers_id: _answers_channel(flow, settings),
    }
    if settings.retry_max_attempts:
        channels[f"{flow.key}Retries"] = _retry_channel(flow, settings)
    channels[f"{flow.key}DeadLetters"] = _queue_channel(
        route.dead_queue,
        ("deadLetter",),
        f"Bound to the direct exchange `{exchange}` with routing key `{route.queue}`: what "
        "failed after the retry budget (answered 500) and bodies that are not even a command "
        "(400), kept for a human to look at.",
    )
    return channels


def _answers_channel(flow: Flow, settings: Settings) -> dict[str, Any]:
    if flow.route.result_queue is None:
        return {
            "address": None,
            "description": "The requester's own queue, named by the request's `reply_to`.",
            "messages": _channel_messages((flow.answer,)),
        }
    return _queue_channel(
        flow.route.result_queue,
        (flow.answer,),
        f"One result per command that has no `reply_to`; message TTL "
        f"{settings.result_ttl_seconds} s (`x-message-ttl`).",
    )


def _retry_channel(flow: Flow, settings: Settings) -> dict[str, Any]:
    attempts = range(1, settings.retry_max_attempts + 1)
    delays = ", ".join(f"{n}: {settings.retry_delay_ms(n)} ms" for n in attempts)
    channel = _queue_channel(
        f"{flow.route.queue}.retry.{{attempt}}",
        ("retriedCommand",),
        f"Delayed retries of a transient failure. Retry queue n holds the command for its "
        f"`x-message-ttl` ({delays}), then dead-letters it back to `{flow.route.queue}` "
        f"through the default exchange. After the last one the command is answered 500 and "
        f"copied to `{flow.route.dead_queue}`.",
    )
    retry = {"description": "The retry, from 1.", "enum": [str(n) for n in attempts]}
    return channel | {"parameters": {"attempt": retry}}


def _queue_channel(address: str, messages: tuple[str, ...], description: str) -> dict[str, Any]:
    queue = {"name": address, "durable": True, "exclusive": False, "autoDelete": False}
    return {
        "address": address,
        "description": description,
        "messages": _channel_messages(messages),
        "bindings": _amqp({"is": "queue", "queue": queue}),
    }


def _event_channel(routing_key: str, settings: Settings) -> dict[str, Any]:
    name = settings.events_exchange
    exchange = {"name": name, "type": "topic", "durable": True, "autoDelete": False}
    return {
        "address": routing_key,
        "description": f"Routing key `{routing_key}` on the topic exchange `{name}`. "
        + EVENTS[routing_key][0],
        "messages": _channel_messages((_event_id(routing_key),)),
        "bindings": _amqp({"is": "routingKey", "exchange": exchange}),
    }


def _channel_messages(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}


def _flow_operations(flow: Flow, settings: Settings) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "channel": {"$ref": f"#/channels/{flow.answers_id}"},
        "messages": [_message_ref(flow.answers_id, flow.answer)],
    }
    if flow.route.result_queue is None:
        reply["address"] = {
            "location": "$message.header#/reply_to",
            "description": "The request's `reply_to` property.",
        }
    take = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{flow.commands_id}"},
        "description": "Each is acked once its effect is durable and its answer confirmed; "
        "the answer goes to its `reply_to` if it has one.",
        "messages": [_message_ref(flow.commands_id, name) for name in flow.commands],
        "reply": reply,
        "bindings": _amqp({"ack": True}),
    }
    key = _title(flow.key)
    operations = {
        f"receive{_title(flow.commands_id)}": take,
        f"send{_title(flow.answers_id)}": _send(
            flow.answers_id, [flow.answer], "One answer per command, with its correlation id."
        ),
    }
    if settings.retry_max_attempts:
        operations[f"send{key}Retries"] = _send(
            f"{flow.key}Retries", ["retriedCommand"], "A command sent back for a later try."
        )
    operations[f"send{key}DeadLetters"] = _send(
        f"{flow.key}DeadLetters", ["deadLetter"], "A command put aside for a human."
    )
    return operations


def _send(channel: str, messages: list[str], description: str) -> dict[str, Any]:
    """Everything the worker sends is persistent and confirmed by the broker."""
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel}"},
        "description": f"{description} Persistent, with publisher confirms.",
        "messages": [_message_ref(channel, name) for name in messages],
        "bindings": _amqp({"deliveryMode": PERSISTENT}),
    }


def _message_ref(channel: str, message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message}"}


def _messages() -> dict[str, Any]:
    command, copy = "CommandProperties", "CopyHeaders"
    messages = {
        "importCommand": _message("Profile import (SPEC §4).", _ref("ImportCommand"), command),
        "flatImportCommand": _message(
            "Profile import, flat form (SPEC §4.1).", _ref("FlatImportCommand"), command
        ),
        "relationCommand": _message(
            "Relation command (SPEC §5).", _ref("RelationCommand"), command
        ),
        "relationQuery": _message(
            "Relation query (SPEC §6).", _ref("RelationQuery"), "QueryProperties", correlated=True
        ),
        "retriedCommand": _message("A command sent back for a later try, unchanged.", {}, copy),
        "deadLetter": _message("A command put aside, unchanged (maybe not JSON).", {}, copy),
    }
    for name, model in (
        ("importResult", "ImportResult"),
        ("relationResult", "RelationResult"),
        ("queryAnswer", "QueryAnswer"),
    ):
        summary = f"{model}: success (`error` 0) or an error of SPEC §3."
        payload = {"allOf": [_ref(model), _ref("Error")]}  # `error` as SPEC §3 fixes it
        messages[name] = _message(summary, payload, "AnswerProperties", correlated=True)
    for routing_key, (summary, fields) in EVENTS.items():
        required = ["event", "occurred_at", "account_id", *fields]
        kind = {"properties": {"event": {"const": routing_key}}, "required": required}
        messages[_event_id(routing_key)] = _message(summary, {"allOf": [_ref("Event"), kind]})
    return messages


def _message(
    summary: str, payload: dict[str, Any], headers: str | None = None, *, correlated: bool = False
) -> dict[str, Any]:
    message: dict[str, Any] = {"summary": summary, "contentType": JSON_CONTENT}
    if headers:
        message["headers"] = _ref(headers)
    message["payload"] = payload
    if correlated:
        message["correlationId"] = {"location": "$message.header#/correlation_id"}
    return message | {"bindings": _amqp({})}


def _model_schemas() -> dict[str, Any]:
    """The contract models and everything they refer to. An answer sent with all its fields
    (none left out for being None or unset) lists every field as required."""
    keys, definitions = models_json_schema(MODELS, ref_template=SCHEMAS)
    schemas: dict[str, Any] = definitions["$defs"]
    for (model, _), ref in keys.items():
        if issubclass(model, SentModel) and not (model.omit_none or model.omit_unset):
            schema = schemas[ref["$ref"].rsplit("/", 1)[-1]]
            schema["required"] = list(schema["properties"])
    schemas["FlatImportCommand"] = _flat_import(schemas["ImportCommand"])
    return schemas


def _flat_import(canonical: dict[str, Any]) -> dict[str, Any]:
    """SPEC §4.1's flat form: the parameters without `data`, every other key a profile field."""
    properties = {
        name: deepcopy(value)  # no shared objects: YAML would print them as anchors
        for name, value in canonical["properties"].items()
        if name != "data"
    }
    properties["matching"] = _string(
        "A matching mode of SPEC §4.2, or a field name: `custom` matching on that field."
    )
    return {
        "title": "FlatImportCommand",
        "description": "An import without `data`: every key that is not a parameter is a "
        "profile field (SPEC §4.3), at least one.",
        "type": "object",
        "properties": properties,
        "required": [name for name in canonical["required"] if name != "data"],
        "additionalProperties": {"description": "A profile field."},
        "not": {"required": ["data"]},
    }


def _wire_schemas(settings: Settings) -> dict[str, Any]:
    """The error shape of SPEC §3, and the AMQP properties and headers of each message."""
    codes = "\n".join(f"- {code}: {meaning}" for code, meaning in ERROR_CODES.items())
    answer = "AMQP property: the command's `correlation_id`, else its `message_id`."
    return {
        "ErrorCode": {
            "type": "integer",
            "description": f"SPEC §3:\n{codes}",
            "enum": list(ERROR_CODES),
            "x-enum-descriptions": list(ERROR_CODES.values()),
        },
        "Error": {
            "type": "object",
            "description": "What every answer carries (SPEC §3).",
            "properties": {
                "error": _ref("ErrorCode"),
                "error_text": _string(
                    '`""` on success for commands, `"Successful operation"` for queries; '
                    "otherwise what went wrong (for 400, the offending field)."
                ),
            },
            "required": ["error", "error_text"],
        },
        "CommandProperties": _headers(_strings(COMMAND_PROPERTIES)),
        "QueryProperties": _headers(_strings(COMMAND_PROPERTIES), "reply_to", "correlation_id"),
        "AnswerProperties": _headers({"correlation_id": _string(answer)}),
        "CopyHeaders": _headers(_copy_headers(settings), ATTEMPT_HEADER, REASON_HEADER),
    }


def _copy_headers(settings: Settings) -> dict[str, Any]:
    """A copy keeps the command's properties and headers, and has these."""
    kept = ("message_id", "correlation_id", "reply_to")
    return {
        **_strings({name: COMMAND_PROPERTIES[name] for name in kept}),
        ATTEMPT_HEADER: {
            "type": "integer",
            "minimum": 0,
            "maximum": settings.retry_max_attempts + 1,
            "description": "Header: how many deliveries of the command failed transiently.",
        },
        REASON_HEADER: _string("Header: why the command was sent back or put aside.")
        | {"maxLength": 512},
        ORIGINAL_USER_HEADER: _string(
            "Header: the producer's validated `user_id`. Copies are published as the worker's "
            "own broker user, and the worker trusts this header only on such copies."
        ),
    }


def _headers(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    return schema | {"required": list(required)} if required else schema


def _amqp(binding: dict[str, Any]) -> dict[str, Any]:
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING}}


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": SCHEMAS.format(model=schema)}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _strings(descriptions: dict[str, str]) -> dict[str, Any]:
    return {name: _string(description) for name, description in descriptions.items()}


def _event_id(routing_key: str) -> str:
    """`profile.created` → `profileCreated`."""
    first, *rest = routing_key.split(".")
    return first + "".join(_title(part) for part in rest)


def _title(word: str) -> str:
    return word[:1].upper() + word[1:]


def _sorted(mapping: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(mapping.items()))
