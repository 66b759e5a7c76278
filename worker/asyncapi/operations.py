"""`operations`: what the worker does on each channel. It receives commands and acks them;
everything else (answers, retries, dead letters, events) it sends, persistent and confirmed."""

from __future__ import annotations

from typing import Any

from worker.asyncapi.flows import Flow, flows
from worker.asyncapi.messages import amqp
from worker.asyncapi.names import event_id, title
from worker.asyncapi.schemas import EVENTS
from worker.settings import Settings

PERSISTENT = 2
"""AMQP delivery mode."""
_PARTITIONED = (
    " With `PW_PARTITIONS` > 1 the command queue is taken by the routing stage instead, and "
    "commands are applied from its partitions."
)


def operations(settings: Settings) -> dict[str, Any]:
    """The routes' operations in route order, then the publication of each event kind."""
    found: dict[str, Any] = {}
    for flow in flows(settings):
        found |= _flow_operations(flow, settings)
    for routing_key in EVENTS:
        name = event_id(routing_key)
        found[f"send{title(name)}"] = _send(name, [name], f"Publish `{routing_key}`.")
    return found


def _flow_operations(flow: Flow, settings: Settings) -> dict[str, Any]:
    key = title(flow.key)
    found = {f"receive{title(flow.commands_id)}": _receive(flow, flow.commands_id)}
    if flow.order:
        found[f"send{key}ToPartitions"] = _send(
            flow.partitions_id,
            list(flow.commands),
            f"The routing stage (`PW_PARTITIONS` > 1): each command of `{flow.route.queue}`, "
            "unchanged, under its order key's hash; acked once every copy is confirmed.",
        )
        found[f"receive{key}PartitionCommands"] = _receive(flow, flow.partition_queues_id)
    found[f"send{title(flow.answers_id)}"] = _send(
        flow.answers_id, [flow.answer], "One answer per command, with its correlation id."
    )
    if settings.retry_max_attempts:
        found[f"send{key}Retries"] = _send(
            f"{flow.key}Retries", ["retriedCommand"], "A command sent back for a later try."
        )
    found[f"send{key}DeadLetters"] = _send(
        f"{flow.key}DeadLetters", ["deadLetter"], "A command put aside for a human."
    )
    return found


def _receive(flow: Flow, channel: str) -> dict[str, Any]:
    """Taking a command from `channel` (its queue, or a partition of it), with its reply: to the
    result queue, or to the `reply_to` for a route that has none."""
    reply: dict[str, Any] = {
        "channel": {"$ref": f"#/channels/{flow.answers_id}"},
        "messages": [_message_ref(flow.answers_id, flow.answer)],
    }
    if flow.route.result_queue is None:
        reply["address"] = {
            "location": "$message.header#/reply_to",
            "description": "The request's `reply_to` property.",
        }
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel}"},
        "description": "Each is acked once its effect is durable and its answer confirmed; "
        "the answer goes to its `reply_to` if it has one."
        + (_PARTITIONED if flow.order and channel == flow.commands_id else ""),
        "messages": [_message_ref(channel, name) for name in flow.commands],
        "reply": reply,
        "bindings": amqp({"ack": True}),
    }


def _send(channel: str, messages: list[str], description: str) -> dict[str, Any]:
    """Everything the worker sends is persistent and confirmed by the broker."""
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel}"},
        "description": f"{description} Persistent, with publisher confirms.",
        "messages": [_message_ref(channel, name) for name in messages],
        "bindings": amqp({"deliveryMode": PERSISTENT}),
    }


def _message_ref(channel: str, message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message}"}
