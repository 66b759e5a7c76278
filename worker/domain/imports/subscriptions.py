"""Subscriptions of a profile to the account's resources (SPEC §4.4).

One subscription per (resource, channel, address) in a database: the address is claimed like
a unique field, so it belongs to one profile. Re-importing it updates status, priority,
custom fields and categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from worker.contract.common import describe_validation_error
from worker.contract.imports import SubscriptionInput
from worker.domain.shared.catalog import Resource
from worker.domain.shared.coercion import check_keys
from worker.domain.shared.identity import normalize_email, normalize_phone
from worker.domain.shared.profiles import subscription_key, subscription_slot
from worker.errors import InvalidCommand, NotFound


@dataclass(frozen=True)
class SubscriptionChange:
    """A validated subscription and its claim key."""

    key: str
    given: SubscriptionInput
    address: str


def parse_subscriptions(
    raw: Any, db_id: int, resources: Sequence[Resource]
) -> list[SubscriptionChange]:
    """Validate `data.subscriptions`: shape, resource of the account, channel address."""
    if not isinstance(raw, list):
        raise InvalidCommand("field 'subscriptions' must be an array")
    by_id = {resource.resource_id: resource for resource in resources}
    changes: dict[str, SubscriptionChange] = {}
    for position, item in enumerate(raw):
        where = f"subscriptions[{position}]"
        try:
            given = SubscriptionInput.model_validate(item)
        except ValidationError as exc:
            raise InvalidCommand(f"{where}: {describe_validation_error(exc)}") from None
        resource = by_id.get(given.resource_id)
        if resource is None:
            raise NotFound(f"resource {given.resource_id} not found in the account")
        if given.channel not in resource.channels:
            raise InvalidCommand(
                f"{where}: resource {given.resource_id} has no channel '{given.channel}'"
            )
        check_keys(given.custom_fields or {}, f"{where}.custom_fields")
        address = _address(given, where)
        key = subscription_key(db_id, given.channel, given.resource_id, address)
        changes[key] = SubscriptionChange(key, given, address)
    return list(changes.values())


def _address(given: SubscriptionInput, where: str) -> str:
    if given.channel == "email":
        if given.email is None:
            raise InvalidCommand(f"{where}: an email subscription needs 'email'")
        return normalize_email(given.email, f"{where}.email")
    if given.channel == "sms":
        if given.phone is None:
            raise InvalidCommand(f"{where}: an sms subscription needs 'phone'")
        return normalize_phone(given.phone, f"{where}.phone")
    if not given.provider or not given.subscription_id:
        raise InvalidCommand(f"{where}: a push subscription needs 'provider' and 'subscription_id'")
    return f"{given.provider}:{given.subscription_id}"


def merged(change: SubscriptionChange, current: dict[str, Any] | None) -> dict[str, Any]:
    """The stored subscription after this import: given values replace, others are kept."""
    given = change.given
    document: dict[str, Any] = dict(current or {"status": "subscribed"})
    document.update(
        key=change.key,
        resource_id=given.resource_id,
        channel=given.channel,
        address=change.address,
    )
    for name in (
        "email",
        "provider",
        "subscription_id",
        "status",
        "priority",
        "custom_fields",
        "cats",
    ):
        value = getattr(given, name)
        if value is not None:
            document[name] = value
    if given.channel == "sms":
        document["phone"] = change.address
    return document


def slot_of(change: SubscriptionChange) -> str:
    return subscription_slot(change.key)
