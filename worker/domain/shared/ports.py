"""What the domain needs from storage: four small ports, each injected where it is used.

The domain says *what* a command changes (a write intent, with the answer and events that go
with it); the store makes it land exactly once. Versions, applied-command markers, revision
reservations and server quirks stay behind these ports (`worker.store`, on MongoDB-wire
servers; `tests/contract` is their contract suite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from worker.contract.common import ResultModel
from worker.domain.shared.catalog import (
    Account,
    BrokerUser,
    Database,
    RelationType,
    Resource,
    Token,
)
from worker.domain.shared.profiles import Profile, ProfileWrite
from worker.domain.shared.relations import Relation, RelationWrite


class CredentialReader(Protocol):
    """The part of the catalog that authorization reads."""

    async def token(self, token_sha256: str) -> Token | None: ...
    async def broker_user(self, user: str) -> BrokerUser | None: ...


class CatalogReader(CredentialReader, Protocol):
    async def account(self, account_id: int) -> Account | None: ...
    async def database(self, db_id: int) -> Database | None: ...
    async def resources(self, account_id: int) -> tuple[Resource, ...]: ...
    async def relation_types(self, account_id: int) -> tuple[RelationType, ...]: ...


WriteStatus = Literal["applied", "conflict", "landed_before", "fenced"]
"""`conflict`: another writer changed the document since it was read; plan again.
`landed_before`: the command's effect was already on the document (an earlier owner of the
command wrote it): nothing was written, and the inbox holds the answer that goes with it.
`fenced`: a later owner of the writer's partition wrote the document: this process lost the
partition, and its batch goes back to the broker unanswered."""


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

    async def profile_account(self, profile_id: str) -> int | None:
        """The account a profile belongs to, if it exists."""
        ...

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        """Make writes touching distinct profiles land, each at most once per command.

        Each write is planned on `write.before` as it was read; it applies only if the profile
        is still as read, and never a second time for the same `command_id` (`landed_before`).
        The write's answer is recorded with it, so a copy of the command answers the same.
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

    async def write(self, writes: Sequence[RelationWrite]) -> list[WriteStatus]:
        """Make writes touching distinct relations land, each at most once per command: an
        update or delete only if the relation is still as read, a creation only if its key
        is free (or already names the new id)."""
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


@dataclass(frozen=True)
class Recorded:
    """The command was decided before: answer `result` again.

    `events` is set only when its effect landed but its answer may never have been sent (its
    owner lost its partition or died in between): they are published (again; consumers
    dedupe on `message_id` + `event`).
    Both are the JSON documents recorded; the processor reads them back into its models.
    """

    result: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]] = ()
    unsent: bool = False
    """Decided (a refusal recorded, or a write that landed) but not marked done: its answer
    may never have been sent, so it is sent now, and the command is then marked done."""


@dataclass(frozen=True)
class Resume:
    """An earlier owner decided the command and wrote its answer ahead, but its write did not
    land (and now never will): decide it again, on the same `target`, so that a creation is
    planned under the id the earlier owner chose."""

    target: str | int


Prior = Recorded | Resume


class Inbox(Protocol):
    """What was decided of each command: the dedup inbox of SPEC §9 (`worker.store.inbox`)."""

    async def take_over(self, command_ids: Sequence[str]) -> dict[str, Prior]:
        """What is recorded of each command; one that is not in the answer was never decided."""
        ...

    async def remember(self, answers: Mapping[str, ResultModel]) -> None:
        """Record answers given without an effect (refusals) by command id."""
        ...

    async def finish(self, command_ids: Sequence[str]) -> None:
        """The commands were answered; a copy from now on gets the recorded answer."""
        ...

    async def forget_before(self, moment: datetime) -> int:
        """Drop what was recorded before `moment` (the dedup window); how many commands."""
        ...


@dataclass(frozen=True)
class Stores:
    """The ports a worker process uses; built once and passed down."""

    catalog: CatalogReader
    profiles: ProfileStore
    relations: RelationStore
    inbox: Inbox
