"""The import command mix the throughput harnesses share (bench.run, bench.naive)."""

from __future__ import annotations

import uuid
from typing import Any

TOKEN = "demo-crm-token-0123456789"


def commands(count: int) -> list[tuple[str | None, dict[str, Any]]]:
    """70 % creations, 30 % updates of already created profiles, spread through the stream;
    updates alternate between email and custom (`loyalty_id`) matching."""
    bodies: list[tuple[str | None, dict[str, Any]]] = []
    created = 0
    for n in range(count):
        update = n % 10 >= 7 and created > 0
        index = (n * 7919) % created if update else created
        created += 0 if update else 1
        body: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN}
        if not update:
            data = {
                "_fname": f"Name{index}",
                "city": "Bergen",
                "age": 30,
                "interests": "a, b",
                "loyalty_id": f"L{index}",
            }
            body.update(email=f"bench{index}@example.com", data=data)
        elif n % 2:
            data = {"age": {"action": "incr", "value": 1}, "city": "Oslo"}
            body.update(email=f"bench{index}@example.com", data=data)
        else:
            data = {"age": {"action": "incr", "value": 1}, "vip": True}
            body.update(
                matching="custom", field_name="loyalty_id", field_value=f"L{index}", data=data
            )
        bodies.append((uuid.uuid4().hex, body))
    return bodies
