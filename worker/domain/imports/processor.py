"""The import path for a batch: claim, authorize, match, plan, write.

Commands run in rounds. A round takes at most one command per profile, so later commands on
the same profile see the effect of earlier ones and queue order holds inside a batch. A write
that lost a race to another process is planned again in the next round.
"""

from __future__ import annotations

from typing import Any

from worker.contract.imports import ImportCommand, ImportResult, decode_import
from worker.domain.envelope import Envelope, Outcome
from worker.domain.imports.fields import plan_changes
from worker.domain.imports.plan import ImportJob, plan_import
from worker.domain.imports.subscriptions import parse_subscriptions
from worker.domain.processing import CommandProcessor
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.coercion import unique_form
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.matching import candidates, match_spec, order_key
from worker.domain.shared.ports import ProfileStore
from worker.domain.shared.profile_lookup import LookupRequest, look_up
from worker.domain.shared.profiles import Profile, ProfileWrite, unique_key
from worker.errors import LimitReached, NotFound, Refusal, WriteConflict


class ImportProcessor(CommandProcessor[ImportJob]):
    """Turns a batch of import envelopes into one outcome each, in order."""

    dedup_prefix = "import"
    result_model = ImportResult

    def _job(
        self, index: int, envelope: Envelope, dedup_id: str | None, target: str | int | None
    ) -> ImportJob:
        command, key = self._decoded(envelope, _keyed_import)
        return ImportJob(
            index=index,
            envelope=envelope,
            command=command,
            dedup_id=dedup_id,
            order_key=key,
            resume_target=str(target) if target is not None else None,
        )

    async def _round(
        self, jobs: list[ImportJob], outcomes: list[Outcome | None]
    ) -> list[ImportJob]:
        """Run one round; return the jobs to try again in the next."""
        ready = await self._guarded(jobs, outcomes, self._prepare)
        planned, deferred = await self._plan(ready, outcomes)
        landed = await self._landed(planned, self._stores.profiles.write, outcomes)
        return [*landed, *deferred]

    async def _prepare(self, job: ImportJob) -> None:
        """Catalog checks and field validation: everything that needs no profile."""
        command, catalog = job.command, self._stores.catalog
        account = await catalog.account(command.account_id)
        if account is None:
            raise NotFound(f"account {command.account_id} not found")
        database = await catalog.database(command.db_id)
        if database is None or database.account_id != command.account_id:
            raise NotFound(f"database {command.db_id} not found in account {command.account_id}")
        account.check_message_size(job.envelope.body)
        await authorize(
            Access(
                command.account_id, [command.db_id], "write", command.token, job.envelope.user_id
            ),
            catalog,
        )
        job.account, job.database = account, database
        schema = database.field_specs
        data = dict(command.data)
        raw_subscriptions = data.pop("subscriptions", None)
        job.changes = plan_changes(schema, data)
        resources = await catalog.resources(command.account_id)
        if raw_subscriptions is not None:
            job.subscriptions = parse_subscriptions(raw_subscriptions, command.db_id, resources)
        job.spec = match_spec(command, schema, resources)
        job.unique_keys = tuple(
            unique_key(command.db_id, name, unique_form(schema[name], value))
            for name, value in job.changes.set.items()
            if schema[name].unique
        )

    async def _plan(
        self, jobs: list[ImportJob], outcomes: list[Outcome | None]
    ) -> tuple[list[tuple[ImportJob, ProfileWrite]], list[ImportJob]]:
        """Match every job against the store and plan it; defer a second job on one profile."""
        owners, profiles = await self._lookup(jobs)
        now = self._clock()
        limits = _ProfileLimits(self._stores.profiles)
        planned: list[tuple[ImportJob, ProfileWrite]] = []
        deferred: list[ImportJob] = []
        taken: set[str] = set()
        for job in jobs:
            try:
                target, profile_id = _resolve(job, owners, profiles)
                creating = target is None and job.command.matching != "profile_id"
                identity = job.order_key if creating else profile_id
                if identity in taken or profile_id in taken:
                    deferred.append(job)
                    continue
                taken.update((identity, profile_id))
                write = plan_import(job, target, profile_id, owners, profiles, now)
                if write.create:
                    await limits.take(job)
                planned.append((job, write))
            except WriteConflict:
                deferred.append(job)
            except Refusal as refusal:
                outcomes[job.index] = self._refused_job(job, refusal)
        return planned, deferred

    async def _lookup(self, jobs: list[ImportJob]) -> tuple[dict[str, str], dict[str, Profile]]:
        """Claim owners and the profiles every job's matching or writing depends on."""
        requests = []
        for job in jobs:
            assert job.spec is not None
            extra = (*job.unique_keys, *(change.key for change in job.subscriptions))
            requests.append(LookupRequest(job.command.db_id, job.spec, extra))
        lookup = await look_up(self._stores.profiles, requests)
        for job, found in zip(jobs, lookup.found, strict=True):
            job.found = found
        return lookup.owners, lookup.profiles


def _keyed_import(raw: dict[str, Any]) -> tuple[ImportCommand, str]:
    command = decode_import(raw)
    return command, order_key(command)


def _resolve(
    job: ImportJob, owners: dict[str, str], profiles: dict[str, Profile]
) -> tuple[Profile | None, str]:
    """The profile the job matched, and the id it writes to (a new one if none matched)."""
    assert job.spec is not None
    assert job.database is not None
    if job.spec.profile_id is not None:
        return profiles.get(job.spec.profile_id), job.spec.profile_id
    target, adoptable = candidates(job.spec, job.database.field_specs, owners, profiles, job.found)
    if target is not None:
        return target, target.profile_id
    return None, adoptable or job.resume_target or new_profile_id()


class _ProfileLimits:
    """`max_profiles` per account (402), counted once per round and per account."""

    def __init__(self, profiles: ProfileStore) -> None:
        self._profiles = profiles
        self._counts: dict[int, int] = {}

    async def take(self, job: ImportJob) -> None:
        assert job.account is not None
        limit, account_id = job.account.max_profiles, job.account.account_id
        if limit is None:
            return
        if account_id not in self._counts:
            self._counts[account_id] = await self._profiles.count(account_id)
        if self._counts[account_id] >= limit:
            raise LimitReached(f"account {account_id} reached its limit of {limit} profiles")
        self._counts[account_id] += 1
