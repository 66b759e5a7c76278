"""`channels`: every queue of each route (commands, answers, retries, dead letters) and each
event's routing key on the topic exchange, named and described from the settings."""

from __future__ import annotations

from typing import Any

from worker.asyncapi.flows import Flow, flows
from worker.asyncapi.messages import amqp
from worker.asyncapi.names import event_id, message_refs
from worker.asyncapi.partitions import partition_channels
from worker.asyncapi.schemas import EVENTS
from worker.settings import Settings


def channels(settings: Settings) -> dict[str, Any]:
    """The routes' channels in route order, then one channel per event kind."""
    found: dict[str, Any] = {}
    for flow in flows(settings):
        found |= _flow_channels(flow, settings)
    for routing_key in EVENTS:
        found[event_id(routing_key)] = _event_channel(routing_key, settings)
    return found


def _flow_channels(flow: Flow, settings: Settings) -> dict[str, Any]:
    route, exchange = flow.route, settings.dead_letter_exchange
    routed = (
        f" With PW_PARTITIONS > 1 one process at a time (the routing stage) consumes it and "
        f"moves each command to `{route.queue}.partitions`."
        if flow.order
        else ""
    )
    found = {
        flow.commands_id: _queue_channel(
            route.queue,
            flow.commands,
            f"{flow.description} Rejected deliveries dead-letter to `{route.dead_queue}` "
            f"through `{exchange}`.{routed}",
        ),
        flow.answers_id: _answers_channel(flow, settings),
    }
    if flow.order:
        found |= partition_channels(flow, settings)
    if settings.retry_max_attempts:
        found[f"{flow.key}Retries"] = _retry_channel(flow, settings)
    found[f"{flow.key}DeadLetters"] = _queue_channel(
        route.dead_queue,
        ("deadLetter",),
        f"Bound to the direct exchange `{exchange}` with routing key `{route.queue}`: what "
        "failed after the retry budget (answered 500) and bodies that are not even a command "
        "(400), kept for a human to look at.",
    )
    return found


def _answers_channel(flow: Flow, settings: Settings) -> dict[str, Any]:
    """A result queue, or, for a route without one, whatever queue the `reply_to` names."""
    if flow.route.result_queue is None:
        return {
            "address": None,
            "description": "The requester's own queue, named by the request's `reply_to`.",
            "messages": message_refs((flow.answer,)),
        }
    limit = settings.result_queue_max_length
    bounded = (
        f" At most {limit} ready results (`x-max-length`, `x-overflow: reject-publish`): "
        "while it is full the worker holds its commands unacked and publishes again."
        if limit is not None
        else ""
    )
    return _queue_channel(
        flow.route.result_queue,
        (flow.answer,),
        f"One result per command that has no `reply_to`; message TTL "
        f"{settings.result_ttl_seconds} s (`x-message-ttl`).{bounded}",
    )


def _retry_channel(flow: Flow, settings: Settings) -> dict[str, Any]:
    """One channel for all retry queues of a route: the attempt is a parameter."""
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
        "messages": message_refs(messages),
        "bindings": amqp({"is": "queue", "queue": queue}),
    }


def _event_channel(routing_key: str, settings: Settings) -> dict[str, Any]:
    name = settings.events_exchange
    exchange = {"name": name, "type": "topic", "durable": True, "autoDelete": False}
    return {
        "address": routing_key,
        "description": f"Routing key `{routing_key}` on the topic exchange `{name}`. "
        + EVENTS[routing_key][0],
        "messages": message_refs((event_id(routing_key),)),
        "bindings": amqp({"is": "routingKey", "exchange": exchange}),
    }
