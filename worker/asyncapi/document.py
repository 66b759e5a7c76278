"""The top-level AsyncAPI document: info and servers, and the parts the other modules of
this package build, in a fixed order so the same settings give the same text."""

from __future__ import annotations

from typing import Any

import worker
from worker.asyncapi.channels import channels
from worker.asyncapi.messages import JSON_CONTENT, header_schemas, messages
from worker.asyncapi.names import sorted_keys
from worker.asyncapi.operations import operations
from worker.asyncapi.schemas import error_schemas, model_schemas
from worker.settings import Settings


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The whole document; the same settings give the same document, key for key."""
    schemas = model_schemas() | error_schemas() | header_schemas(settings)
    return {
        "asyncapi": "3.0.0",
        "info": _info(),
        "servers": _servers(),
        "defaultContentType": JSON_CONTENT,
        "channels": channels(settings),
        "operations": operations(settings),
        "components": {
            "schemas": sorted_keys(schemas),
            "messages": sorted_keys(messages()),
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
