"""What the domain knows of a stored profile and of a change to one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.domain.identity import short_hash


@dataclass(frozen=True)
class Profile:
    """A profile as read from the store: its fields, version and applied-command markers."""

    profile_id: str
    db_id: int
    account_id: int
    fields: dict[str, Any]
    version: int
    markers: dict[str, int] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def subscription_keys(self) -> set[str]:
        """The subscription keys this profile holds now."""
        return {str(sub["key"]) for sub in self.subscriptions.values()}


@dataclass
class FieldChanges:
    """The field-level effect of one import, one MongoDB-neutral bucket per kind of change."""

    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict[str, int | float] = field(default_factory=dict)
    add_tags: dict[str, list[str]] = field(default_factory=dict)
    remove_tags: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every field this change touches, sorted."""
        return sorted({*self.set, *self.unset, *self.inc, *self.add_tags, *self.remove_tags})


@dataclass(frozen=True)
class ProfileWrite:
    """One planned, idempotent profile write.

    `marker` identifies the command and stays on the profile, so after a crash a replay can
    tell whether the write landed and never applies it twice. `claims` maps unique keys to the
    profile that owns them now (None: nobody), `releases` are keys this profile gives up.
    """

    profile_id: str
    db_id: int
    account_id: int
    create: bool
    expected_version: int
    changes: FieldChanges
    marker: str
    marker_at_ms: int
    pruned_markers: tuple[str, ...] = ()
    claims: dict[str, str | None] = field(default_factory=dict)
    releases: tuple[str, ...] = ()
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)


def unique_key(db_id: int, field_name: str, value: str) -> str:
    """The claim key that makes `value` of `field_name` unique within a database."""
    return f"{db_id}:{field_name}:{value}"


def subscription_key(db_id: int, channel: str, resource_id: int, address: str) -> str:
    """The claim key of one subscription: one profile per (resource, channel, address)."""
    return f"{db_id}:sub:{channel}:{resource_id}:{address}"


def subscription_slot(key: str) -> str:
    """Where a subscription lives inside its profile document: a hash, safe as a field name."""
    return short_hash(key)
