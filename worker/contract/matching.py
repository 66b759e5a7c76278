"""The matching keys of SPEC §4.2, shared by imports, relation sides and relation queries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import StrictStr

from worker.contract.common import CommandModel, Id

MatchingMode = Literal[
    "email",
    "email_profile",
    "email_sub",
    "phone",
    "phone_sub",
    "email_phone",
    "email_phone_sub",
    "profile_id",
    "custom",
    "push_sub",
]
MATCHING_MODES: frozenset[str] = frozenset(MatchingMode.__args__)  # type: ignore[attr-defined]


class MatchingKeys(CommandModel):
    """The matching keys of SPEC §4.2 for one profile; the database comes from elsewhere."""

    matching: MatchingMode | None = None
    email: StrictStr | None = None
    phone: StrictStr | None = None
    profile_id: StrictStr | None = None
    field_name: StrictStr | None = None
    field_value: Any = None
    provider: StrictStr | None = None
    subscription_id: StrictStr | None = None
    resource_id: Id | None = None

    @property
    def mode(self) -> str:
        """The mode asked for; a bare `profile_id` means `profile_id` matching."""
        if self.matching is not None:
            return self.matching
        return "profile_id" if self.profile_id is not None else "email"
