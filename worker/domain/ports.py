"""What the domain needs from storage. MongoDB implements it in `worker.store`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from worker.domain.catalog import Account, BrokerUser, Database, RelationType, Resource, Token
from worker.domain.profiles import Profile, ProfileWrite
from worker.domain.relations import Relation, RelationWrite


class CredentialReader(Protocol):
    """The part of the catalog that authorization reads."""

    async def token(self, token_sha256: str) -> Token | None: ...
    async def broker_user(self, user: str) -> BrokerUser | None: ...


class CatalogReader(CredentialReader, Protocol):
    async def account(self, account_id: int) -> Account | None: ...
    async def database(self, db_id: int) -> Database | None: ...
    async def resources(self, account_id: int) -> tuple[Resource, ...]: ...
    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]: ...


@dataclass(frozen=True)
class InboxEntry:
    """What the dedup inbox holds for one message id.

    `pending`: the outcome was decided and written ahead, the effect may or may not be applied.
    `done`: applied and answered; a redelivery only re-sends `result`.
    """

    dedup_id: str
    state: Literal["pending", "done"]
    result: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    write: ProfileWrite | None = None


WriteStatus = Literal["applied", "conflict"]


class ProfileStore(Protocol):
    async def owners(self, keys: Sequence[str]) -> dict[str, str]:
        """The profile id that owns each unique key that is claimed."""
        ...

    async def profiles(self, db_id: int, profile_ids: Sequence[str]) -> dict[str, Profile]:
        """The profiles of `db_id` among `profile_ids` that exist."""
        ...

    async def matching(self, db_id: int, field: str, value: Any, *, all_of: bool) -> list[str]:
        """Ids of up to two profiles whose field equals (contains; all of, for tags) `value`."""
        ...

    async def count(self, account_id: int) -> int:
        """How many profiles the account has."""
        ...

    async def apply(self, writes: Sequence[ProfileWrite], *, replay: bool) -> list[WriteStatus]:
        """Apply writes touching distinct profiles; each reports applied or conflict.

        An update applies only if its writer is the one to reserve the version after
        `expected_version`; otherwise it is a conflict, to be planned again. With `replay`
        (finishing a write planned before a crash), a write whose marker the profile already
        carries counts as applied, an update without it is a conflict, a creation is retried.
        """
        ...


@dataclass(frozen=True)
class RelationFilter:
    """Which relations a query reads: always one account's."""

    account_id: int
    rel_id: int | None = None
    profile_id_a: str | None = None
    contact: str | None = None
    """A profile on either side."""
    having: str | None = None
    """A property the relations must have."""


class RelationStore(Protocol):
    async def relations_by_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Relation], dict[str, int]]:
        """The relations with these natural keys, and the id each claimed key points at."""
        ...

    async def relations_by_ids(self, relation_ids: Sequence[int]) -> dict[int, Relation]: ...

    async def new_relation_ids(self, count: int) -> list[int]:
        """Ids no other process will ever hand out."""
        ...

    async def apply_relations(self, writes: Sequence[RelationWrite]) -> list[WriteStatus]:
        """Apply writes touching distinct relations; an update or delete applies only if its
        writer reserved the version after the one it was planned on, a creation only if it
        claimed the relation's key (or its own claim was there)."""
        ...

    async def count_relations(self, where: RelationFilter) -> int: ...

    async def relation_page(
        self, where: RelationFilter, *, by_priority: bool, after: tuple[int, int] | None, limit: int
    ) -> list[Relation]: ...

    async def property_sum(self, where: RelationFilter, name: str) -> int | float:
        """The sum of a numeric property over the relations."""
        ...

    async def top_relations(self, where: RelationFilter, name: str, limit: int) -> list[Relation]:
        """Relations with the highest values of a numeric property, highest first."""
        ...

    async def profile_account(self, profile_id: str) -> int | None:
        """The account a profile belongs to, if it exists."""
        ...


class Inbox(Protocol):
    async def lookup(self, dedup_ids: Sequence[str]) -> dict[str, InboxEntry]: ...
    async def begin(self, entries: Sequence[InboxEntry], at: datetime) -> None: ...
    async def finish(self, dedup_ids: Sequence[str]) -> None: ...
    async def forget_before(self, moment: datetime) -> int: ...


class Store(CatalogReader, ProfileStore, RelationStore, Inbox, Protocol):
    """Everything the worker keeps."""

    async def ping(self) -> None: ...
