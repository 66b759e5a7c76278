"""How channels, operations and messages are named, so every module derives the same ids."""

from __future__ import annotations

from typing import Any


def event_id(routing_key: str) -> str:
    """`profile.created` → `profileCreated`."""
    first, *rest = routing_key.split(".")
    return first + "".join(title(part) for part in rest)


def title(word: str) -> str:
    """Only the first letter: `importCommands` → `ImportCommands`, unlike `str.title`."""
    return word[:1].upper() + word[1:]


def sorted_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """Components in name order, so the document does not depend on how they were gathered."""
    return dict(sorted(mapping.items()))


def message_refs(names: tuple[str, ...]) -> dict[str, Any]:
    """A channel's `messages`: references to `components.messages`."""
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}
