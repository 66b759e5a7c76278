"""The partitions of a command queue (SPEC §9): the partition exchange that producers may
publish to straight, with the routing key they must give, and the partition queues behind it,
named as `worker.runtime.partitions` names them."""

from __future__ import annotations

from typing import Any

import orjson

from worker.asyncapi.flows import Flow
from worker.asyncapi.messages import amqp
from worker.asyncapi.names import message_refs
from worker.domain.order import CommandKind, order_key_of, routing_key
from worker.runtime.partitions import Partitions
from worker.settings import Settings

ROUTING_KEY = "partitionKey"
"""The parameter of the partition exchange's channel: a command's routing key."""
EXAMPLE_PARTITIONS = 8
"""P for the example routing keys when the document is made with P = 1 (no partitions)."""

EXAMPLES: dict[CommandKind, dict[str, Any]] = {
    "imports": {"account_id": 1, "db_id": 10, "email": "Ada@Example.com", "_fname": "Ada"},
    "relations": {
        "action": "strengthen",
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"email": "ada@example.com"},
        "profile_b": {"profile_id": "65f1c0ffee0000000000000b"},
        "weights": {"weight": 1},
    },
}
"""A command of each kind, whose routing key the document shows."""


def example(kind: CommandKind, partitions: int) -> tuple[bytes, str]:
    """An example body of `kind` and its routing key with `partitions` partitions."""
    body = orjson.dumps(EXAMPLES[kind])
    assert order_key_of(kind, body, len(body)) is not None, "an example must have an order key"
    return body, routing_key(kind, body, partitions)


def partition_channels(flow: Flow, settings: Settings) -> dict[str, Any]:
    """The partition exchange and the partition queues of a command queue."""
    assert flow.order is not None
    partitions = Partitions(flow.route.queue, settings.partitions)
    return {
        flow.partitions_id: _exchange_channel(flow, flow.order, partitions),
        flow.partition_queues_id: _queues_channel(flow, partitions),
    }


def _exchange_channel(flow: Flow, kind: CommandKind, partitions: Partitions) -> dict[str, Any]:
    queue, exchange, count = partitions.queue, partitions.exchange, partitions.count
    shown = count if partitions.routed else EXAMPLE_PARTITIONS
    body, key = example(kind, shown)
    exchange_binding = {"name": exchange, "durable": True, "autoDelete": False}
    return {
        "address": f"{{{ROUTING_KEY}}}",
        "description": (
            f"The partitions of `{queue}` (SPEC §9), with `PW_PARTITIONS` = P > 1 (P = {count} "
            f"in the settings this document was made with): the durable exchange `{exchange}` "
            f"of type `direct`, to which each of the P queues `{queue}.partition.<i>`, "
            "i = 0 … P-1, is bound with the routing key `i`. The "
            f"routing stage (one process at a time consumes `{queue}`) publishes every command "
            "here unchanged (body, `message_id`, `correlation_id`, `reply_to`, headers) as the "
            "worker's broker user, with the producer's validated `user_id` in "
            "`x-original-user-id`. A producer may publish here itself and skip that hop: under "
            "its routing key a command joins the commands of its order key in one partition, "
            f"in the order they arrive. With P = 1 neither this exchange nor the partition "
            f"queues exist: publish to `{queue}`. Beside them the worker declares "
            f"`{partitions.members}` and `{partitions.hungry}`, which never hold a message (they "
            "count the live processes): publish to neither."
        ),
        "parameters": {
            ROUTING_KEY: {
                "description": (
                    "The routing key: the command's partition in decimal, the XXH64 (seed 0) of "
                    "its order key (SPEC §9) modulo P, as `worker.domain.order.routing_key("
                    f'kind, body, P)` computes it, with kind `"{kind}"` here. A body without an '
                    "order key is placed by the XXH64 of its bytes and refused (400) by the "
                    f"partition it reaches. A producer that cannot compute it publishes to "
                    f"`{queue}` instead. Example: with P = {shown} the body `{body.decode()}` "
                    f"has the routing key `{key}`."
                ),
                "examples": [key],
            }
        },
        "messages": message_refs(flow.commands),
        "bindings": amqp({"is": "routingKey", "exchange": exchange_binding}),
    }


def _queues_channel(flow: Flow, partitions: Partitions) -> dict[str, Any]:
    queue, count = partitions.queue, partitions.count
    address = f"{queue}.partition.{{partition}}"
    partition: dict[str, Any] = {"description": "The partition, from 0 to P-1."}
    if partitions.routed:
        partition["enum"] = [str(index) for index in range(count)]
    binding = {"name": address, "durable": True, "exclusive": False, "autoDelete": False}
    return {
        "address": address,
        "description": (
            f"A partition of `{queue}` (`PW_PARTITIONS` > 1): a durable queue with the "
            f"arguments of `{queue}` (queue type; rejected deliveries dead-letter to "
            f"`{queue}.dead`), bound to `{partitions.exchange}` with its index as the routing "
            "key. One process at a time consumes it (an "
            "exclusive consumer; `x-single-active-consumer` on quorum queues), so the commands "
            "of one order key apply in queue order. Retries go back to "
            f"`{queue}` and through the routing stage again. Producers do not publish here: "
            "they publish to the exchange under the partition's key."
        ),
        "parameters": {"partition": partition},
        "messages": message_refs(flow.commands),
        "bindings": amqp({"is": "queue", "queue": binding}),
    }
