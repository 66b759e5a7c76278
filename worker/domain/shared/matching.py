"""How an import finds its profile: the matching modes of SPEC §4.2.

A mode becomes a `MatchSpec`: claim keys to read (the unique `email`, a unique custom field,
subscription addresses) and field queries (`phones`, non-unique custom fields, tags). The
profiles they point at are the candidates: none → create, one → update, more → 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.domain.shared.catalog import Channel, FieldSpec, Resource
from worker.domain.shared.coercion import coerce, to_tags, unique_form
from worker.domain.shared.identity import check_profile_id, normalize_email, normalize_phone
from worker.domain.shared.profiles import Profile, subscription_key, unique_key
from worker.errors import Ambiguous, InvalidCommand

EMAIL_MODES = frozenset({"email", "email_profile", "email_sub", "email_phone", "email_phone_sub"})
PHONE_MODES = frozenset({"phone", "phone_sub", "email_phone", "email_phone_sub"})


class MatchKeys(Protocol):
    """The matching keys of a command (SPEC §4.2), wherever they come from: an import, or one
    side of a relation command or query."""

    @property
    def matching(self) -> str: ...
    @property
    def db_id(self) -> int: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def profile_id(self) -> str | None: ...
    @property
    def field_name(self) -> str | None: ...
    @property
    def field_value(self) -> Any: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def subscription_id(self) -> str | None: ...
    @property
    def resource_id(self) -> int | None: ...


@dataclass(frozen=True)
class FieldQuery:
    """Profiles whose `field` equals (or, for arrays, contains) `value`; all of them for tags."""

    field: str
    value: Any
    all_of: bool = False


@dataclass(frozen=True)
class MatchSpec:
    """Where to look for the profile a command means."""

    unique_field: str | None = None
    unique_key: str | None = None
    subscription_keys: tuple[str, ...] = ()
    queries: tuple[FieldQuery, ...] = ()
    profile_id: str | None = None

    def claim_keys(self) -> list[str]:
        return [*([self.unique_key] if self.unique_key else []), *self.subscription_keys]


def _email(command: MatchKeys) -> str | None:
    return normalize_email(command.email) if command.email is not None else None


def _phone(command: MatchKeys) -> str | None:
    return normalize_phone(command.phone) if command.phone is not None else None


def order_key(command: MatchKeys) -> str:
    """Commands with the same key touch the same profile and must apply in queue order.

    Cheap and catalog-free: it also validates that the mode's keys are present.
    """
    mode, db = command.matching, command.db_id
    if mode == "profile_id":
        return f"{db}:_id:{check_profile_id(command.profile_id or '')}"
    if mode == "custom":
        if command.field_name is None or command.field_value is None:
            raise InvalidCommand("matching 'custom' needs 'field_name' and 'field_value'")
        return f"{db}:{command.field_name}:{command.field_value}"
    if mode == "push_sub":
        if not command.provider or not command.subscription_id:
            raise InvalidCommand("matching 'push_sub' needs 'provider' and 'subscription_id'")
        return f"{db}:push:{command.provider}:{command.subscription_id}"
    email = _email(command) if mode in EMAIL_MODES else None
    phone = _phone(command) if mode in PHONE_MODES else None
    if email is None and phone is None:
        wanted = {"email": mode in EMAIL_MODES, "phone": mode in PHONE_MODES}
        names = " or ".join(f"'{name}'" for name, needed in wanted.items() if needed)
        raise InvalidCommand(f"missing parameter {names} for matching '{mode}'")
    return f"{db}:email:{email}" if email else f"{db}:phone:{phone}"


def match_spec(
    command: MatchKeys, schema: dict[str, FieldSpec], resources: Sequence[Resource]
) -> MatchSpec:
    """The claim keys and queries of the command's matching mode."""
    mode, db = command.matching, command.db_id
    if mode == "profile_id":
        return MatchSpec(profile_id=command.profile_id)
    if mode == "custom":
        return _custom(command, schema)
    if mode == "push_sub":
        address = f"{command.provider}:{command.subscription_id}"
        return MatchSpec(subscription_keys=tuple(_sub_keys(command, resources, "push", address)))
    email, phone = _email(command), _phone(command)
    by_subscription = mode.endswith("_sub")
    spec = MatchSpec()
    keys: list[str] = []
    if email and mode in EMAIL_MODES:
        if mode in ("email", "email_sub", "email_phone_sub"):
            keys += _sub_keys(command, resources, "email", email)
        if not by_subscription:
            spec = MatchSpec(unique_field="email", unique_key=unique_key(db, "email", email))
    queries: tuple[FieldQuery, ...] = ()
    if phone and mode in PHONE_MODES:
        if mode in ("phone", "phone_sub", "email_phone_sub"):
            keys += _sub_keys(command, resources, "sms", phone)
        if not by_subscription:
            queries = (FieldQuery("phones", phone),)
    return MatchSpec(spec.unique_field, spec.unique_key, tuple(keys), queries)


def _custom(command: MatchKeys, schema: dict[str, FieldSpec]) -> MatchSpec:
    spec = schema.get(command.field_name or "")
    if spec is None:
        raise InvalidCommand(f"unknown field '{command.field_name}' in 'field_name'")
    if spec.type == "tags":
        return MatchSpec(queries=(FieldQuery(spec.name, to_tags(spec, command.field_value), True),))
    value = coerce(spec, command.field_value)
    if spec.type == "phones":
        return MatchSpec(queries=(FieldQuery(spec.name, value[0]),))
    if spec.unique:
        key = unique_key(command.db_id, spec.name, unique_form(spec, value))
        return MatchSpec(unique_field=spec.name, unique_key=key)
    if spec.type == "object":
        raise InvalidCommand(f"field '{spec.name}' is an object and cannot be matched")
    return MatchSpec(queries=(FieldQuery(spec.name, value),))


def _sub_keys(
    command: MatchKeys, resources: Sequence[Resource], channel: Channel, address: str
) -> list[str]:
    """Subscription keys to look up: the given resource, else every resource of the channel."""
    ids = (
        [command.resource_id]
        if command.resource_id is not None
        else [resource.resource_id for resource in resources if channel in resource.channels]
    )
    return [subscription_key(command.db_id, channel, rid, address) for rid in ids]


def candidates(
    spec: MatchSpec,
    schema: dict[str, FieldSpec],
    owners: dict[str, str],
    profiles: dict[str, Profile],
    found_by_query: Sequence[str],
) -> tuple[Profile | None, str | None]:
    """The one profile matched (or None), and a claimed id whose profile is missing.

    Claims are checked against the profile they name, so a stale claim (a value changed
    since) matches nothing. A unique claim whose profile is missing is returned for adoption:
    a creation cut short by a crash finishes under the id it had claimed.
    """
    matched: set[str] = set()
    adoptable: str | None = None
    if spec.unique_key and spec.unique_field:
        owner = owners.get(spec.unique_key)
        profile = profiles.get(owner) if owner else None
        if owner and profile is None:
            adoptable = owner
        elif profile is not None and holds(profile, schema[spec.unique_field], spec.unique_key):
            matched.add(profile.profile_id)
    for key in spec.subscription_keys:
        owner = owners.get(key)
        profile = profiles.get(owner) if owner else None
        if profile is not None and key in profile.subscription_keys():
            matched.add(profile.profile_id)
    matched.update(pid for pid in found_by_query if pid in profiles)
    if len(matched) > 1:
        raise Ambiguous(f"matching not precise: {len(matched)} profiles matched")
    if matched:
        return profiles[matched.pop()], None
    return None, adoptable


def holds(profile: Profile, spec: FieldSpec, key: str) -> bool:
    """Whether the profile's current value of a unique field is the one `key` claims."""
    value = profile.fields.get(spec.name)
    if value is None:
        return False
    return unique_key(profile.db_id, spec.name, unique_form(spec, value)) == key
