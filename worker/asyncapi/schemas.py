"""`components.schemas`: the contract models as JSON Schema, the error shape of SPEC §3 and
the fields each event kind always carries, so payloads are described by the code that
decodes and sends them."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from worker.contract.common import SentModel
from worker.contract.events import Event
from worker.contract.imports import ImportCommand, ImportResult
from worker.contract.queries import QueryAnswer, RelationQuery
from worker.contract.relations import RelationCommand, RelationResult

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


def model_schemas() -> dict[str, Any]:
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
    properties["matching"] = string(
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


def error_schemas() -> dict[str, Any]:
    """The error shape of SPEC §3, which every answer's payload combines with its model."""
    codes = "\n".join(f"- {code}: {meaning}" for code, meaning in ERROR_CODES.items())
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
                "error": ref("ErrorCode"),
                "error_text": string(
                    '`""` on success for commands, `"Successful operation"` for queries; '
                    "otherwise what went wrong (for 400, the offending field)."
                ),
            },
            "required": ["error", "error_text"],
        },
    }


def ref(schema: str) -> dict[str, str]:
    """A reference to one of `components.schemas`."""
    return {"$ref": SCHEMAS.format(model=schema)}


def string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def strings(descriptions: dict[str, str]) -> dict[str, Any]:
    return {name: string(description) for name, description in descriptions.items()}
