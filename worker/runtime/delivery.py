"""A command as it came off the wire: its body, the AMQP properties the worker reads, and the
tag that acks it. Read straight from aiormq's frames, with no client-side message object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiormq.abc import DeliveredMessage


@dataclass(frozen=True, slots=True)
class Delivery:
    body: bytes
    delivery_tag: int
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    user_id: str | None
    headers: dict[str, Any]

    @classmethod
    def of(cls, message: DeliveredMessage) -> Delivery:
        properties = message.header.properties
        tag = getattr(message.delivery, "delivery_tag", None)
        return cls(
            body=message.body,
            delivery_tag=tag if isinstance(tag, int) else 0,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
            reply_to=properties.reply_to,
            user_id=properties.user_id,
            headers=dict(properties.headers or {}),
        )
