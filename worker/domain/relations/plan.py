"""Deciding what one relation command does: pure, given the relation the store holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


@dataclass
class RelationJob:
    """One command on its way through a batch."""

    index: int
    envelope: Envelope
    command: RelationCommand
    dedup_id: str | None
    order_key: str
    rtype: RelationType | None = None
    weights: dict[str, Value] = field(default_factory=dict)
    current: Relation | None = None
    key: str | None = None
    profile_ids: tuple[str, str] | None = None
    claimed_id: int | None = None
    sides: list[LookupRequest] = field(default_factory=list)


def plan_relation(job: RelationJob, new_id: int | None, now: datetime) -> RelationWrite:
    """Plan one command on its relation (`job.current`), or a creation under `new_id`: the
    write, with its answer and events."""
    command, rtype, current = job.command, job.rtype, job.current
    assert rtype is not None
    kind: WriteKind
    if current is None:
        assert new_id is not None
        assert job.profile_ids is not None  # a missing relation is only ever addressed by them
        profile_id_a, profile_id_b = job.profile_ids
        blank = Relation(
            relation_id=new_id,
            rel_id=rtype.rel_id,
            account_id=command.account_id,
            db_a=rtype.db_a,
            db_b=rtype.db_b,
            profile_id_a=profile_id_a,
            profile_id_b=profile_id_b,
        )
        relation, kind = after(command, job.weights, blank), "create"
    elif command.action == "detach":
        relation, kind = current, "delete"
    else:
        relation, kind = after(command, job.weights, current), "update"
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
    ).model_dump(mode="json")
    events = [] if unchanged else [_event(EVENTS[kind], relation, job, now)]
    return RelationWrite(kind, relation, current, job.dedup_id, result, events)


def _event(name: str, relation: Relation, job: RelationJob, now: datetime) -> dict[str, Any]:
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
    ).model_dump(mode="json", exclude_none=True)
