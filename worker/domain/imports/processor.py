"""The import path for a batch: take over, decode, check, then rounds of look up, plan, write.

A round writes at most one command per profile: a command waits while an earlier one of the
batch still has its profile (or a unique value it sets or may give up, or the profile holding
such a value) in hand, so later commands see the effect of earlier ones and queue order holds
inside a batch, whether a profile is addressed by email, id or another key. A write that lost a
race to another process is planned again in the next round.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.contract.imports import ImportResult, decode_import
from worker.domain.envelope import Envelope, Outcome
from worker.domain.imports.fields import plan_changes
from worker.domain.imports.plan import CheckedImport, ImportJob, plan_import, releasable_keys
from worker.domain.imports.subscriptions import parse_subscriptions
from worker.domain.processing import Admitted, Batch, CommandProcessor
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.catalog import Account
from worker.domain.shared.coercion import unique_form
from worker.domain.shared.identity import new_profile_id
from worker.domain.shared.matching import candidates, match_spec, order_key
from worker.domain.shared.ports import ProfileStore
from worker.domain.shared.profile_lookup import Lookup, LookupRequest, look_up
from worker.domain.shared.profiles import Profile, ProfileWrite, unique_key
from worker.errors import InvalidCommand, LimitReached, NotFound, Refusal, WriteConflict


class ImportProcessor(CommandProcessor):
    """Turns a batch of import envelopes into one outcome each, in order."""

    kind = "import"
    result_model = ImportResult

    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        batch = self._batch(envelopes)
        admitted = await batch.take_over()
        jobs = [job for each in admitted if (job := _decoded(each, batch)) is not None]
        checked = [item for job in jobs if (item := await self._checked(job, batch)) is not None]
        for _ in batch.rounds():
            lookup = await self._lookup(checked)
            planned, _ = await self._plan(checked, lookup, batch)
            await batch.write(planned, self._stores.profiles)
            checked = [item for item in checked if batch.undecided(item.job)]
            if not checked:
                break
        return await batch.settled([item.job for item in checked])

    async def _checked(self, job: ImportJob, batch: Batch) -> CheckedImport | None:
        """The job past its checks, once per batch (None: refused)."""
        try:
            return await self._check(job)
        except Refusal as error:
            batch.refuse(job, error)
            return None

    async def _check(self, job: ImportJob) -> CheckedImport:
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
        schema = database.field_specs
        data = dict(command.data)
        raw_subscriptions = data.pop("subscriptions", None)
        changes = plan_changes(schema, data)
        resources = await catalog.resources(command.account_id)
        subscriptions = (
            parse_subscriptions(raw_subscriptions, command.db_id, resources)
            if raw_subscriptions is not None
            else []
        )
        spec = match_spec(command, schema, resources)
        unique_keys = tuple(
            unique_key(command.db_id, name, unique_form(schema[name], value))
            for name, value in changes.set.items()
            if schema[name].unique
        )
        return CheckedImport(
            job, account, database, changes, tuple(subscriptions), spec, unique_keys
        )

    async def _lookup(self, checked: list[CheckedImport]) -> Lookup:
        """Claim owners and the profiles every job's matching or writing depends on."""
        requests = [
            LookupRequest(
                item.job.command.db_id,
                item.spec,
                (*item.unique_keys, *(change.key for change in item.subscriptions)),
            )
            for item in checked
        ]
        return await look_up(self._stores.profiles, requests)

    async def _plan(
        self, checked: list[CheckedImport], lookup: Lookup, batch: Batch
    ) -> tuple[list[tuple[ImportJob, ProfileWrite]], list[ImportJob]]:
        """Plan every job on what it matched, in queue order; a job whose profile or unique
        values an earlier job still has in hand (planned or waiting) waits a round."""
        now = self._clock()
        limits = _ProfileLimits(self._stores.profiles)
        planned: list[tuple[ImportJob, ProfileWrite]] = []
        waiting: list[ImportJob] = []
        in_hand: set[str] = set()
        for item, found in zip(checked, lookup.found, strict=True):
            job = item.job
            try:
                target, profile_id = _resolve(item, found, lookup)
                creating = target is None and job.command.matching != "profile_id"
                identity = job.order_key if creating else profile_id
                releasable = releasable_keys(item.database, item.changes, target)
                holds = {identity, profile_id, *item.unique_keys, *releasable}
                holders = {lookup.owners[key] for key in item.unique_keys if key in lookup.owners}
                if not in_hand.isdisjoint(holds | holders):
                    in_hand |= holds
                    waiting.append(job)
                    continue
                write = plan_import(item, target, profile_id, lookup.owners, lookup.profiles, now)
                if write.create:
                    await limits.take(item.account)
                in_hand |= holds
                planned.append((job, write))
            except WriteConflict:
                in_hand |= holds
                waiting.append(job)
            except Refusal as error:
                batch.refuse(job, error)
        return planned, waiting


def _decoded(admitted: Admitted, batch: Batch) -> ImportJob | None:
    """The admitted command as a job (None: it does not validate, and is refused)."""
    target = str(admitted.target) if admitted.target is not None else None
    try:
        command = decode_import(admitted.raw)
        key = order_key(command)
    except InvalidCommand as error:
        batch.refuse_undecoded(admitted, error)
        return None
    return ImportJob(admitted.index, admitted.envelope, command, admitted.command_id, key, target)


def _resolve(
    checked: CheckedImport, found: list[str], lookup: Lookup
) -> tuple[Profile | None, str]:
    """The profile the job matched, and the id it writes to (a new one if none matched)."""
    spec, owners, profiles = checked.spec, lookup.owners, lookup.profiles
    if spec.profile_id is not None:
        return profiles.get(spec.profile_id), spec.profile_id
    schema = checked.database.field_specs
    target, adoptable = candidates(spec, schema, owners, profiles, found)
    if target is not None:
        return target, target.profile_id
    return None, adoptable or checked.job.resume_target or new_profile_id()


class _ProfileLimits:
    """`max_profiles` per account (402), counted once per round and per account."""

    def __init__(self, profiles: ProfileStore) -> None:
        self._profiles = profiles
        self._counts: dict[int, int] = {}

    async def take(self, account: Account) -> None:
        limit, account_id = account.max_profiles, account.account_id
        if limit is None:
            return
        if account_id not in self._counts:
            self._counts[account_id] = await self._profiles.count(account_id)
        if self._counts[account_id] >= limit:
            raise LimitReached(f"account {account_id} reached its limit of {limit} profiles")
        self._counts[account_id] += 1
