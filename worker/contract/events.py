"""Domain events published to the `profile_events` topic exchange (SPEC §7)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import field_serializer

from worker.contract.common import SentModel


class Event(SentModel):
    """One thing that happened; the routing key is `event`. Fields that do not apply to it
    (None) are left out."""

    omit_none: ClassVar[bool] = True

    event: str
    occurred_at: datetime
    account_id: int
    db_id: int | None = None
    profile_id: str | None = None
    profile_xxh: str | None = None
    changed_fields: list[str] | None = None
    resource_id: int | None = None
    channel: str | None = None
    status: str | None = None
    trigger_id: int | None = None
    workflow_id: int | None = None
    relation_id: int | None = None
    rel_id: int | None = None
    db_a: int | None = None
    db_b: int | None = None
    profile_id_a: str | None = None
    xxh_a: str | None = None
    profile_id_b: str | None = None
    xxh_b: str | None = None
    props: dict[str, bool | int | float] | None = None
    relation_to_a: str | None = None
    relation_to_b: str | None = None
    priority: int | None = None
    feedback_id: str | None = None
    message_id: str | None = None

    @field_serializer("occurred_at")
    def _rfc3339_utc(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
