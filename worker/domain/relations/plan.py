"""Deciding what one relation command does: pure, given the relation the store holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.contract.events import Event
from worker.contract.relations import RelationCommand, RelationResult
from worker.domain.envelope import Envelope
from worker.domain.relations.rules import after
from worker.domain.shared.catalog import RelationType
from worker.domain.shared.identity import profile_xxh
from worker.domain.shared.profile_lookup import LookupRequest
from worker.domain.shared.relations import Relation, RelationWrite, Value, WriteKind

EVENTS: dict[WriteKind, str] = {
    "create": "relation.attached",
    "update": "relation.changed",
    "delete": "relation.detached",
}


@dataclass(frozen=True)
class RelationJob:
    """One decoded command on its way through a batch."""

    index: int
    envelope: Envelope
    command: RelationCommand
    command_id: str | None
    order_key: str


@dataclass(frozen=True)
class CheckedRelation:
    """A job past the checks that need no profile: its relation type and weights, and either
    the relation it addresses by id or what to look up for each side (A, then B)."""

    job: RelationJob
    rtype: RelationType
    weights: dict[str, Value]
    addressed: Relation | None
    sides: tuple[LookupRequest, ...] = ()


@dataclass(frozen=True)
class ResolvedRelation:
    """A job and the relation it acts on: its key, and the relation as stored (None: not
    there). A job addressed by profiles also knows their ids, and the relation id its key
    claims already (a creation cut short), if any."""

    checked: CheckedRelation
    key: str
    current: Relation | None
    profile_ids: tuple[str, str] | None = None
    claimed_id: int | None = None


def plan_relation(resolved: ResolvedRelation, new_id: int | None, now: datetime) -> RelationWrite:
    """Plan one command on its relation (`resolved.current`), or a creation under `new_id`:
    the write, with its answer and events."""
    checked, current = resolved.checked, resolved.current
    job, rtype, weights = checked.job, checked.rtype, checked.weights
    command = job.command
    kind: WriteKind
    if current is None:
        assert new_id is not None
        assert resolved.profile_ids is not None  # a missing relation is addressed by profiles
        profile_id_a, profile_id_b = resolved.profile_ids
        blank = Relation(
            relation_id=new_id,
            rel_id=rtype.rel_id,
            account_id=command.account_id,
            db_a=rtype.db_a,
            db_b=rtype.db_b,
            profile_id_a=profile_id_a,
            profile_id_b=profile_id_b,
        )
        relation, kind = after(command, weights, blank), "create"
    elif command.action == "detach":
        relation, kind = current, "delete"
    else:
        relation, kind = after(command, weights, current), "update"
    unchanged = kind == "update" and relation == current
    result = RelationResult(
        action=command.action,
        rel_id=relation.rel_id,
        relation_id=relation.relation_id,
        profile_a=relation.profile_id_a,
        profile_b=relation.profile_id_b,
        props=relation.props,
        created=kind == "create",
        feedback_id=command.feedback_id,
        message_id=job.envelope.message_id,
        correlation_id=job.envelope.correlation_id,
    )
    events = () if unchanged else (_event(EVENTS[kind], relation, job, now),)
    return RelationWrite(kind, relation, current, job.command_id, result, events)


def _event(name: str, relation: Relation, job: RelationJob, now: datetime) -> Event:
    return Event(
        event=name,
        occurred_at=now,
        account_id=relation.account_id,
        relation_id=relation.relation_id,
        rel_id=relation.rel_id,
        db_a=relation.db_a,
        db_b=relation.db_b,
        profile_id_a=relation.profile_id_a,
        xxh_a=profile_xxh(relation.profile_id_a),
        profile_id_b=relation.profile_id_b,
        xxh_b=profile_xxh(relation.profile_id_b),
        props=relation.props,
        relation_to_a=relation.relation_to_a,
        relation_to_b=relation.relation_to_b,
        priority=relation.priority,
        feedback_id=job.command.feedback_id,
        message_id=job.envelope.message_id,
    )
