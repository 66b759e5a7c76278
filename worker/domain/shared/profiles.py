"""What the domain knows of a stored profile and of a change to one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.domain.shared.identity import short_hash


@dataclass(frozen=True)
class Profile:
    """A profile as read from the store.

    `stamp` is the store's own note of which stored state this is; the domain never looks at
    it, only hands the profile back with a write planned on it.
    """

    profile_id: str
    db_id: int
    account_id: int
    fields: dict[str, Any]
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    stamp: Any = field(default=None, compare=False, repr=False)

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
    """What one command does to one profile, with the answer and events that go with it.

    `before` is the profile as the plan read it (None: a creation). `claims` maps unique keys
    the profile takes to the profile that held each when read (None: nobody; else one that
    no longer has that value), `releases` are keys this profile gives up. `command_id` is
    the command's dedup id (None: a command without a message id).
    """

    command_id: str | None
    profile_id: str
    db_id: int
    account_id: int
    before: Profile | None
    changes: FieldChanges
    result: ResultModel
    events: tuple[Event, ...] = ()
    claims: dict[str, str | None] = field(default_factory=dict)
    releases: tuple[str, ...] = ()
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def create(self) -> bool:
        return self.before is None


def unique_key(db_id: int, field_name: str, value: str) -> str:
    """The claim key that makes `value` of `field_name` unique within a database."""
    return f"{db_id}:{field_name}:{value}"


def subscription_key(db_id: int, channel: str, resource_id: int, address: str) -> str:
    """The claim key of one subscription: one profile per (resource, channel, address)."""
    return f"{db_id}:sub:{channel}:{resource_id}:{address}"


def subscription_slot(key: str) -> str:
    """Where a subscription lives inside its profile document: a hash, safe as a field name."""
    return short_hash(key)
