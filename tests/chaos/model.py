"""A pure reference model of what a stream of commands must leave behind (SPEC §4, §5, §9).

It knows nothing of the worker's code: it folds the commands in publish order (the order one
worker process applies each queue in), the first copy of a message id deciding and every
later copy answering alike and changing nothing. It gives the final profiles and relations,
the one answer each message id must get and the events each must cause. Profiles are named by
(db_id, normalized email) and relations by (rel_id, side A, side B, incarnation), since the
ids the worker generates are not known in advance; the check maps them from the answers.
It covers what the generator sends: imports matched by email (creation, update, `update_only`)
with `set`, `unset`, `incr`, tags `add`/`delete`, a unique field and unknown fields, and
relation `attach`, `strengthen`, `edit`, `detach` with sides by email or `profile_id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tests.chaos.generator import Message

ProfileKey = tuple[int, str]
"""(db_id, normalized email)."""
RelationKey = tuple[int, ProfileKey, ProfileKey]
"""(rel_id, side A, side B)."""

FIELDS = {
    "email": "email",
    "_fname": "string",
    "city": "string",
    "age": "int",
    "score": "float",
    "vip": "bool",
    "interests": "tags",
    "tier": "enum",
    "loyalty_id": "string",
}
UNIQUE = ("email", "loyalty_id")
PROPERTIES = {500: {"weight": "number", "visits": "number", "active": "bool"}}
PROPERTIES[501] = {"closeness": "number"}
SIDES = {500: (10, 11), 501: (10, 10)}


@dataclass(frozen=True)
class RelationState:
    incarnation: int
    props: dict[str, Any] = field(default_factory=dict)
    relation_to_a: str | None = None
    relation_to_b: str | None = None
    priority: int = 50


@dataclass(frozen=True)
class Answer:
    """What a message id must be answered: the error, and on success what it acted on."""

    error: int
    created: bool = False
    profile: ProfileKey | None = None
    relation: tuple[RelationKey, int] | None = None
    props: dict[str, Any] | None = None


@dataclass(frozen=True)
class Expected:
    """An event a message id must cause (once, or several times alike)."""

    event: str
    profile: ProfileKey | None = None
    changed_fields: tuple[str, ...] | None = None
    relation: tuple[RelationKey, int] | None = None
    state: RelationState | None = None


@dataclass
class Changes:
    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict[str, int | float] = field(default_factory=dict)
    add: dict[str, list[str]] = field(default_factory=dict)
    remove: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted({*self.set, *self.unset, *self.inc, *self.add, *self.remove})


class Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class Model:
    """The state after the messages folded so far; `directory` maps the setup's profile ids
    to their keys (sides matched by `profile_id`)."""

    directory: Mapping[str, ProfileKey] = field(default_factory=dict)
    profiles: dict[ProfileKey, dict[str, Any]] = field(default_factory=dict)
    relations: dict[RelationKey, RelationState] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    events: dict[str, list[Expected]] = field(default_factory=dict)
    _claims: dict[tuple[int, str, str], ProfileKey] = field(default_factory=dict)
    _incarnations: dict[RelationKey, int] = field(default_factory=dict)

    def fold(self, messages: Iterable[Message]) -> Model:
        for message in messages:
            if message.message_id in self.answers:
                continue  # a copy: answered alike, no effect
            apply = self._import if message.queue == "imports" else self._relation
            events: list[Expected] = []
            try:
                answer = apply(message.body, events)
            except Refused as refusal:
                answer, events = Answer(refusal.code), []
            self.answers[message.message_id] = answer
            self.events[message.message_id] = events
        return self

    def _import(self, body: dict[str, Any], events: list[Expected]) -> Answer:
        changes = _changes(body["data"])
        by_id = body.get("matching") == "profile_id"
        key = self.directory.get(body["profile_id"]) if by_id else None
        key = key or (body["db_id"], _email(body.get("email") or "?"))
        current = self.profiles.get(key)
        if current is None and (by_id or body.get("update_only")):
            raise Refused(404)
        if current is None:
            changes.set.setdefault("email", body["email"].strip())
        self._claim(key, current or {}, changes)
        after = _changed(dict(current or {}), changes)
        self.profiles[key] = after
        if current is None:
            events.append(Expected("profile.created", key, tuple(changes.names())))
        elif changed := changed_fields(current, changes):
            events.append(Expected("profile.updated", key, tuple(changed)))
        return Answer(0, created=current is None, profile=key)

    def _claim(self, key: ProfileKey, current: dict[str, Any], changes: Changes) -> None:
        """Unique values: 435 when another profile holds one; else release and take."""
        db_id = key[0]
        taken, released = [], []
        for name in [*changes.set, *changes.unset]:
            if name not in UNIQUE:
                continue
            old, new = current.get(name), changes.set.get(name)
            old_claim = (db_id, name, _unique(name, old)) if old is not None else None
            new_claim = (db_id, name, _unique(name, new)) if new is not None else None
            if old_claim is not None and old_claim != new_claim:
                released.append(old_claim)
            if new_claim is not None and self._claims.get(new_claim, key) != key:
                raise Refused(435)
            if new_claim is not None:
                taken.append(new_claim)
        for claim in released:
            self._claims.pop(claim, None)
        self._claims.update(dict.fromkeys(taken, key))

    def _relation(self, body: dict[str, Any], events: list[Expected]) -> Answer:
        rel_id, action = body["rel_id"], body["action"]
        weights = body.get("weights") or {}
        declared = PROPERTIES[rel_id]
        for name, value in weights.items():
            if name not in declared or (declared[name] == "bool") != isinstance(value, bool):
                raise Refused(400)
        db_a, db_b = SIDES[rel_id]
        key = (rel_id, self._side(body["profile_a"], db_a), self._side(body["profile_b"], db_b))
        current = self.relations.get(key)
        if action == "attach" and current is not None:
            raise Refused(409)
        if action == "detach":
            if current is None:
                raise Refused(404)
            del self.relations[key]
            subject = (key, current.incarnation)
            events.append(Expected("relation.detached", None, None, subject, current))
            return Answer(0, relation=(key, current.incarnation), props=current.props)
        if current is None:
            self._incarnations[key] = self._incarnations.get(key, 0) + 1
        base = current or RelationState(self._incarnations[key])
        after = _after(body, weights, base)
        self.relations[key] = after
        subject = (key, after.incarnation)
        if current is None:
            events.append(Expected("relation.attached", None, None, subject, after))
        elif after != current:
            events.append(Expected("relation.changed", None, None, subject, after))
        return Answer(0, created=current is None, relation=subject, props=after.props)

    def _side(self, keys: dict[str, str], db_id: int) -> ProfileKey:
        if "profile_id" in keys:
            key = self.directory.get(keys["profile_id"])
        else:
            key = (db_id, _email(keys["email"]))
        if key is None or key[0] != db_id or key not in self.profiles:
            raise Refused(404)
        return key


def _email(value: str) -> str:
    return value.strip().lower()


def _unique(name: str, value: Any) -> str:
    return _email(value) if name == "email" else str(value)


def _changes(data: dict[str, Any]) -> Changes:
    """The field changes an import asks for, coerced as the schema says; 400 for an unknown
    field."""
    changes = Changes()
    for name, raw in data.items():
        kind = FIELDS.get(name)
        if kind is None:
            raise Refused(400)
        is_update = isinstance(raw, dict) and "action" in raw
        action, value = (raw["action"], raw.get("value")) if is_update else ("set", raw)
        if action == "unset":
            changes.unset.append(name)
        elif action == "incr":
            changes.inc[name] = _coerced(kind, value)
        elif action in ("add", "delete"):
            (changes.add if action == "add" else changes.remove)[name] = _tags(value)
        else:
            changes.set[name] = _coerced(kind, value)
    return changes


def _coerced(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "tags":
        return _tags(value)
    return value


def _tags(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _changed(fields: dict[str, Any], changes: Changes) -> dict[str, Any]:
    """The fields after an import: a creation keeps only what it sets, increments and adds."""
    fields.update(changes.set)
    for name, delta in changes.inc.items():
        fields[name] = fields.get(name, 0) + delta
    for name in changes.unset:
        fields.pop(name, None)
    for name, tags in changes.add.items():
        present = list(fields.get(name) or [])
        fields[name] = present + [tag for tag in tags if tag not in present]
    for name, tags in changes.remove.items():
        if name in fields:
            fields[name] = [tag for tag in fields[name] if tag not in tags]
    return fields


def changed_fields(current: dict[str, Any], changes: Changes) -> list[str]:
    """The fields an update really alters: only those make a `profile.updated`."""
    names = {name for name, value in changes.set.items() if current.get(name) != value}
    names |= {name for name in changes.unset if name in current}
    names |= {name for name, delta in changes.inc.items() if delta != 0}
    names |= {
        name for name, tags in changes.add.items() if set(tags) - set(current.get(name) or ())
    }
    names |= {
        name for name, tags in changes.remove.items() if set(tags) & set(current.get(name) or ())
    }
    return sorted(names)


def _after(body: dict[str, Any], weights: dict[str, Any], current: RelationState) -> RelationState:
    """`strengthen` adds numbers (a missing one counts 0) and sets bools; `attach` and `edit`
    replace the values given. Labels and priority change when given."""
    props = dict(current.props)
    for name, value in weights.items():
        if body["action"] == "strengthen" and not isinstance(value, bool):
            props[name] = props.get(name, 0) + value
        else:
            props[name] = value
    return replace(
        current,
        props=props,
        relation_to_a=body.get("relation_to_a", current.relation_to_a),
        relation_to_b=body.get("relation_to_b", current.relation_to_b),
        priority=body.get("priority", current.priority),
    )
