"""Deciding what one import does to one profile: pure, given what the store said."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import xxhash

from worker.contract.events import Event
from worker.contract.imports import ImportCommand, ImportResult
from worker.domain.catalog import Database, FieldSpec
from worker.domain.coercion import coerce, unique_form
from worker.domain.envelope import Envelope
from worker.domain.identity import check_profile_id, normalize_email, profile_xxh
from worker.domain.profiles import FieldChanges, Profile, ProfileWrite, unique_key
from worker.errors import InvalidCommand, NotFound, UniqueViolation, WriteConflict

MAX_MARKERS = 16
"""Applied-command markers kept per profile; they matter only until the inbox says done."""


@dataclass
class ImportJob:
    """One command on its way through a batch."""

    index: int
    envelope: Envelope
    command: ImportCommand
    dedup_id: str | None
    marker: str
    order_key: str
    database: Database | None = None
    changes: FieldChanges | None = None
    match_key: str | None = None
    unique_keys: tuple[str, ...] = ()
    replay_write: ProfileWrite | None = None
    replay_answer: tuple[dict[str, Any], list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class PlannedImport:
    """The write to make and the answer to give once it is applied."""

    write: ProfileWrite
    result: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def marker_of(operation_id: str) -> str:
    """A short key for an applied-command marker, safe as a MongoDB field name."""
    return xxhash.xxh64_hexdigest(operation_id.encode())


def order_key(command: ImportCommand) -> str:
    """Commands with the same key touch the same profile and must apply in queue order."""
    if command.matching == "profile_id":
        return f"{command.db_id}:_id:{check_profile_id(command.profile_id or '')}"
    if command.matching in ("email", "email_profile"):
        if command.email is None:
            raise InvalidCommand(f"missing parameter 'email' for matching '{command.matching}'")
        return unique_key(command.db_id, "email", normalize_email(command.email))
    if command.matching == "custom":
        if command.field_name is None or command.field_value is None:
            raise InvalidCommand("matching 'custom' needs 'field_name' and 'field_value'")
        return f"{command.db_id}:{command.field_name}:{command.field_value}"
    raise InvalidCommand(f"matching mode '{command.matching}' is not available in this version")


def match_key(command: ImportCommand, schema: dict[str, FieldSpec]) -> str | None:
    """The unique-claim key that finds the profile, or None for matching by profile id."""
    if command.matching == "profile_id":
        return None
    if command.matching == "custom":
        spec = schema.get(command.field_name or "")
        if spec is None:
            raise InvalidCommand(f"unknown field '{command.field_name}' in 'field_name'")
        if not spec.unique:
            raise InvalidCommand(
                f"matching by the non-unique field '{spec.name}' is not available in this version"
            )
        value = unique_form(spec, coerce(spec, command.field_value))
        return unique_key(command.db_id, spec.name, value)
    return unique_key(command.db_id, "email", normalize_email(command.email or ""))


def holds(profile: Profile, spec: FieldSpec, key: str) -> bool:
    """Whether the profile's current value of a unique field is the one `key` claims."""
    value = profile.fields.get(spec.name)
    if value is None:
        return False
    return unique_key(profile.db_id, spec.name, unique_form(spec, value)) == key


def plan_import(
    job: ImportJob,
    target: Profile | None,
    profile_id: str,
    owners: dict[str, str],
    profiles: dict[str, Profile],
    now: datetime,
) -> PlannedImport:
    """Plan one import against the profile it matched (`target`), or a creation as `profile_id`."""
    command, database, changes = job.command, job.database, job.changes
    assert database is not None
    assert changes is not None
    if target is None and (command.update_only or command.matching == "profile_id"):
        raise NotFound(f"profile not found in database {command.db_id}")
    if target is None and command.matching in ("email", "email_profile") and command.email:
        changes.set.setdefault("email", command.email.strip())
    claims, releases = _unique_claims(database, changes, target, profile_id, owners, profiles)
    markers = target.markers if target else {}
    kept = sorted(markers, key=markers.__getitem__)[-(MAX_MARKERS - 1) :]
    write = ProfileWrite(
        profile_id=profile_id,
        db_id=database.db_id,
        account_id=database.account_id,
        create=target is None,
        expected_version=target.version if target else 0,
        changes=changes,
        marker=job.marker,
        marker_at_ms=int(now.timestamp() * 1000),
        pruned_markers=tuple(name for name in markers if name not in kept),
        claims=claims,
        releases=tuple(releases),
    )
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
    return PlannedImport(write, result.model_dump(mode="json"), _events(job, write, target, now))


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


def _events(
    job: ImportJob, write: ProfileWrite, target: Profile | None, now: datetime
) -> list[dict[str, Any]]:
    command = job.command
    common: dict[str, Any] = {
        "occurred_at": now,
        "account_id": command.account_id,
        "db_id": command.db_id,
        "profile_id": write.profile_id,
        "profile_xxh": profile_xxh(write.profile_id),
        "feedback_id": command.feedback_id,
        "message_id": job.envelope.message_id,
    }
    events: list[Event] = []
    if target is None:
        created = write.changes.names()
        events.append(Event(event="profile.created", changed_fields=created, **common))
    else:
        changed = changed_fields(target, write.changes)
        if changed:
            events.append(Event(event="profile.updated", changed_fields=changed, **common))
    if command.trigger_id is not None and not command.skip_triggers:
        events.append(Event(event="trigger.requested", trigger_id=command.trigger_id, **common))
    if command.workflow_id is not None:
        events.append(Event(event="workflow.requested", workflow_id=command.workflow_id, **common))
    return [event.model_dump(mode="json", exclude_none=True) for event in events]
