"""Deciding what one import does to one profile: pure, given what the store said."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.contract.events import Event
from worker.contract.imports import ImportCommand, ImportResult
from worker.domain.envelope import Envelope
from worker.domain.imports.subscriptions import SubscriptionChange, merged, slot_of
from worker.domain.shared.catalog import Account, Database
from worker.domain.shared.coercion import unique_form
from worker.domain.shared.identity import normalize_email, normalize_phone, profile_xxh
from worker.domain.shared.matching import EMAIL_MODES, PHONE_MODES, MatchSpec, holds
from worker.domain.shared.profiles import FieldChanges, Profile, ProfileWrite, unique_key
from worker.errors import NotFound, UniqueViolation, WriteConflict


@dataclass(frozen=True)
class ImportJob:
    """One decoded command on its way through a batch."""

    index: int
    envelope: Envelope
    command: ImportCommand
    command_id: str | None
    order_key: str
    resume_target: str | None = None
    """The profile an owner of this command that died meant to create (see `Yours`)."""


@dataclass(frozen=True)
class CheckedImport:
    """A job past the checks that need no profile: its account and database, the field
    changes and subscriptions it asks for, how it matches, and the unique keys it sets."""

    job: ImportJob
    account: Account
    database: Database
    changes: FieldChanges
    subscriptions: tuple[SubscriptionChange, ...]
    spec: MatchSpec
    unique_keys: tuple[str, ...]


def plan_import(
    checked: CheckedImport,
    target: Profile | None,
    profile_id: str,
    owners: dict[str, str],
    profiles: dict[str, Profile],
    now: datetime,
) -> ProfileWrite:
    """Plan one import against the profile it matched (`target`), or a creation as `profile_id`:
    the write, with its answer and events."""
    job, database, changes = checked.job, checked.database, checked.changes
    command = job.command
    if target is None and (command.update_only or command.matching == "profile_id"):
        raise NotFound(f"profile not found in database {command.db_id}")
    if target is None:
        _creation_defaults(command, changes)
    claims, releases = _unique_claims(database, changes, target, profile_id, owners, profiles)
    subscriptions, subscribed = _subscription_changes(
        checked.subscriptions, target, profile_id, owners, profiles
    )
    claims.update({key: owner for key, owner in subscribed.items() if key not in claims})
    result = ImportResult(
        feedback_id=command.feedback_id,
        message_id=job.envelope.message_id,
        correlation_id=job.envelope.correlation_id,
        matching_field=command.matching,
        profile_id=profile_id,
        profile_xxh=profile_xxh(profile_id),
        created=target is None,
        db_id=command.db_id,
        account_id=command.account_id,
    )
    documents = {slot: document for slot, (document, _) in subscriptions.items()}
    newly_subscribed = [document for document, new in subscriptions.values() if new]
    common = _common(job, profile_id, now)
    events = _events(job, changes, bool(documents), target, common)
    events += _subscribed_events(newly_subscribed, common)
    return ProfileWrite(
        command_id=job.command_id,
        profile_id=profile_id,
        db_id=database.db_id,
        account_id=database.account_id,
        before=target,
        changes=changes,
        result=result,
        events=tuple(events),
        claims=claims,
        releases=tuple(releases),
        subscriptions=documents,
    )


def _creation_defaults(command: ImportCommand, changes: FieldChanges) -> None:
    """A profile created by matching on its own email or phone gets that email or phone."""
    by_profile = not command.matching.endswith("_sub")
    if by_profile and command.matching in EMAIL_MODES and command.email:
        normalize_email(command.email)
        changes.set.setdefault("email", command.email.strip())
    if by_profile and command.matching in PHONE_MODES and command.phone:
        changes.set.setdefault("phones", [normalize_phone(command.phone)])


def _subscription_changes(
    changes: Sequence[SubscriptionChange],
    target: Profile | None,
    profile_id: str,
    owners: dict[str, str],
    profiles: dict[str, Profile],
) -> tuple[dict[str, tuple[dict[str, Any], bool]], dict[str, str | None]]:
    """Each changed subscription's new document (and whether it became subscribed now), and
    the subscription keys to claim; 435 when one belongs to another profile."""
    current = target.subscriptions if target else {}
    documents: dict[str, tuple[dict[str, Any], bool]] = {}
    claims: dict[str, str | None] = {}
    for change in changes:
        slot = slot_of(change)
        before = current.get(slot)
        after = merged(change, before)
        if after == before:
            continue
        was_subscribed = before is not None and before.get("status") == "subscribed"
        documents[slot] = (after, after["status"] == "subscribed" and not was_subscribed)
        owner_id = owners.get(change.key)
        if before is not None or owner_id == profile_id:
            continue
        owner = profiles.get(owner_id) if owner_id else None
        if owner is not None and change.key in owner.subscription_keys():
            raise UniqueViolation(
                f"subscription of '{change.address}' to resource {change.given.resource_id} "
                "belongs to another profile"
            )
        if owner_id is not None and owner is None:
            raise WriteConflict("a subscription is being claimed concurrently")
        claims[change.key] = owner_id
    return documents, claims


def _subscribed_events(documents: list[dict[str, Any]], common: dict[str, Any]) -> list[Event]:
    return [
        Event(
            event="profile.subscribed",
            resource_id=document["resource_id"],
            channel=document["channel"],
            status=document["status"],
            **common,
        )
        for document in documents
    ]


def _unique_claims(
    database: Database,
    changes: FieldChanges,
    target: Profile | None,
    profile_id: str,
    owners: dict[str, str],
    profiles: dict[str, Profile],
) -> tuple[dict[str, str | None], list[str]]:
    """Keys to claim (with their stale owner, if any) and keys to release; 435 on a clash."""
    schema = database.field_specs
    claims: dict[str, str | None] = {}
    releases: list[str] = []
    for name in [*changes.set, *changes.unset]:
        spec = schema[name]
        if not spec.unique:
            continue
        old = target.fields.get(name) if target else None
        old_key = unique_key(database.db_id, name, unique_form(spec, old)) if old else None
        key = (
            unique_key(database.db_id, name, unique_form(spec, changes.set[name]))
            if (name in changes.set)
            else None
        )
        if old_key and old_key != key:
            releases.append(old_key)
        owner_id = owners.get(key) if key else None
        if key is None or owner_id == profile_id:
            continue
        owner = profiles.get(owner_id) if owner_id else None
        if owner is not None and holds(owner, spec, key):
            raise UniqueViolation(f"value of unique field '{name}' belongs to another profile")
        if owner_id is not None and owner is None:
            raise WriteConflict(f"value of unique field '{name}' is being claimed concurrently")
        claims[key] = owner_id
    return claims, releases


def releasable_keys(database: Database, changes: FieldChanges, target: Profile | None) -> set[str]:
    """The unique values the target holds in the fields this change sets or unsets: the
    change may give them up for another profile to take."""
    if target is None:
        return set()
    schema = database.field_specs
    return {
        unique_key(database.db_id, name, unique_form(schema[name], target.fields[name]))
        for name in [*changes.set, *changes.unset]
        if schema[name].unique and target.fields.get(name)
    }


def changed_fields(target: Profile, changes: FieldChanges) -> list[str]:
    """The fields whose stored value this change really alters."""
    current = target.fields
    names = {name for name, value in changes.set.items() if current.get(name) != value}
    names |= {name for name in changes.unset if name in current}
    names |= {name for name, delta in changes.inc.items() if delta != 0}
    names |= {
        name for name, tags in changes.add_tags.items() if set(tags) - set(current.get(name) or ())
    }
    names |= {
        name
        for name, tags in changes.remove_tags.items()
        if set(tags) & set(current.get(name) or ())
    }
    return sorted(names)


def _common(job: ImportJob, profile_id: str, now: datetime) -> dict[str, Any]:
    """What every event about this import carries."""
    return {
        "occurred_at": now,
        "account_id": job.command.account_id,
        "db_id": job.command.db_id,
        "profile_id": profile_id,
        "profile_xxh": profile_xxh(profile_id),
        "feedback_id": job.command.feedback_id,
        "message_id": job.envelope.message_id,
    }


def _events(
    job: ImportJob,
    changes: FieldChanges,
    subscribing: bool,
    target: Profile | None,
    common: dict[str, Any],
) -> list[Event]:
    command = job.command
    subscriptions = ["subscriptions"] if subscribing else []
    events: list[Event] = []
    if target is None:
        created = sorted([*changes.names(), *subscriptions])
        events.append(Event(event="profile.created", changed_fields=created, **common))
    else:
        changed = sorted([*changed_fields(target, changes), *subscriptions])
        if changed:
            events.append(Event(event="profile.updated", changed_fields=changed, **common))
    if command.trigger_id is not None and not command.skip_triggers:
        events.append(Event(event="trigger.requested", trigger_id=command.trigger_id, **common))
    if command.workflow_id is not None:
        events.append(Event(event="workflow.requested", workflow_id=command.workflow_id, **common))
    return events
