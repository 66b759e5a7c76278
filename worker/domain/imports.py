"""The import path for a batch: dedup, authorize, match, plan, write ahead, apply.

Commands run in rounds. A round takes at most one command per profile, so later commands on
the same profile see the effect of earlier ones and queue order holds inside a batch. A write
that lost a race to another process is planned again in the next round.
"""

from __future__ import annotations

import uuid
from typing import Any

from worker.contract.imports import ImportCommand, ImportResult, decode_import
from worker.domain.auth import Access, authorize
from worker.domain.coercion import unique_form
from worker.domain.envelope import Envelope, Outcome
from worker.domain.fields import plan_changes
from worker.domain.identity import new_profile_id
from worker.domain.import_plan import ImportJob, PlannedImport, plan_import
from worker.domain.markers import marker_of
from worker.domain.matching import candidates, match_spec, order_key
from worker.domain.ports import InboxEntry, Store
from worker.domain.processing import CommandProcessor
from worker.domain.profile_lookup import LookupRequest, look_up
from worker.domain.profiles import Profile, unique_key
from worker.domain.subscriptions import parse_subscriptions
from worker.errors import InvalidCommand, LimitReached, NotFound, Refusal, WriteConflict


class ImportProcessor(CommandProcessor[ImportJob]):
    """Turns a batch of import envelopes into one outcome each, in order."""

    dedup_prefix = "import"
    result_model = ImportResult

    def _job(
        self, index: int, envelope: Envelope, dedup_id: str | None, entry: InboxEntry | None
    ) -> ImportJob:
        command, key = self._decoded(envelope, _keyed_import)
        job = ImportJob(
            index=index,
            envelope=envelope,
            command=command,
            dedup_id=dedup_id,
            marker=marker_of(dedup_id or uuid.uuid4().hex),
            order_key=key,
        )
        if entry is not None and entry.write is not None:
            job.replay_write = entry.write
            job.replay_answer = (entry.result, entry.events)
        return job

    async def _round(
        self, jobs: list[ImportJob], outcomes: list[Outcome | None]
    ) -> list[ImportJob]:
        """Run one round; return the jobs to try again in the next."""
        retried = await self._replay(
            [job for job in jobs if job.replay_write is not None], outcomes
        )
        fresh = await self._guarded(
            [job for job in jobs if job.replay_write is None], outcomes, self._prepare
        )
        planned, deferred = await self._plan(fresh, outcomes)
        if planned:
            await self._store.begin(
                [
                    InboxEntry(job.dedup_id, "pending", plan.result, plan.events, plan.write)
                    for job, plan in planned
                    if job.dedup_id
                ],
                self._clock(),
            )
            statuses = await self._store.apply([plan.write for _, plan in planned], replay=False)
            for (job, plan), status in zip(planned, statuses, strict=True):
                if status == "applied":
                    outcomes[job.index] = Outcome(plan.result, plan.events, dedup_id=job.dedup_id)
                else:
                    retried.append(job)
        return [*retried, *deferred]

    async def _replay(
        self, jobs: list[ImportJob], outcomes: list[Outcome | None]
    ) -> list[ImportJob]:
        """Finish commands whose outcome was written ahead before a crash."""
        writes = [job.replay_write for job in jobs if job.replay_write is not None]
        if not writes:
            return []
        statuses = await self._store.apply(writes, replay=True)
        retried = []
        for job, status in zip(jobs, statuses, strict=True):
            if status == "applied" and job.replay_answer is not None:
                result, events = job.replay_answer
                outcomes[job.index] = Outcome(result, events, dedup_id=job.dedup_id)
            else:
                job.replay_write = job.replay_answer = None
                retried.append(job)
        return retried

    async def _prepare(self, job: ImportJob) -> None:
        """Catalog checks and field validation: everything that needs no profile."""
        command = job.command
        account = await self._store.account(command.account_id)
        if account is None:
            raise NotFound(f"account {command.account_id} not found")
        database = await self._store.database(command.db_id)
        if database is None or database.account_id != command.account_id:
            raise NotFound(f"database {command.db_id} not found in account {command.account_id}")
        if account.max_message_bytes and len(job.envelope.body) > account.max_message_bytes:
            raise InvalidCommand(
                f"message is {len(job.envelope.body)} bytes, over the account's limit of "
                f"{account.max_message_bytes}"
            )
        await authorize(
            Access(
                command.account_id, [command.db_id], "write", command.token, job.envelope.user_id
            ),
            self._store,
        )
        job.account, job.database = account, database
        schema = database.field_specs
        data = dict(command.data)
        raw_subscriptions = data.pop("subscriptions", None)
        job.changes = plan_changes(schema, data)
        resources = await self._store.resources(command.account_id)
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
    ) -> tuple[list[tuple[ImportJob, PlannedImport]], list[ImportJob]]:
        """Match every job against the store and plan it; defer a second job on one profile."""
        owners, profiles = await self._lookup(jobs)
        now = self._clock()
        limits = _ProfileLimits(self._store)
        planned: list[tuple[ImportJob, PlannedImport]] = []
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
                plan = plan_import(job, target, profile_id, owners, profiles, now)
                if plan.write.create:
                    await limits.take(job)
                planned.append((job, plan))
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
        lookup = await look_up(self._store, requests)
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
    return None, adoptable or new_profile_id()


class _ProfileLimits:
    """`max_profiles` per account (402), counted once per round and per account."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counts: dict[int, int] = {}

    async def take(self, job: ImportJob) -> None:
        assert job.account is not None
        limit, account_id = job.account.max_profiles, job.account.account_id
        if limit is None:
            return
        if account_id not in self._counts:
            self._counts[account_id] = await self._store.count(account_id)
        if self._counts[account_id] >= limit:
            raise LimitReached(f"account {account_id} reached its limit of {limit} profiles")
        self._counts[account_id] += 1
