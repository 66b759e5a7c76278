"""The relation path for a batch: claim, authorize, resolve both profiles, plan, write.

Like imports, commands run in rounds of one command per order key, and a command whose
relation another command of the round already touches waits for the next round, so commands
on one relation apply in queue order. A write that lost a race is planned again.
"""

from __future__ import annotations

from typing import Any

from worker.contract.relations import RelationCommand, RelationResult, decode_relation
from worker.domain.envelope import Envelope, Outcome
from worker.domain.processing import CommandProcessor
from worker.domain.relations.plan import RelationJob, plan_relation
from worker.domain.relations.rules import checked_weights, refuse_if_inapplicable, relation_type_of
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.matching import order_key
from worker.domain.shared.profile_lookup import existing_profile, look_up, request_for
from worker.domain.shared.relations import ProfileKeys, RelationWrite, relation_key
from worker.errors import NotFound, Refusal


class RelationProcessor(CommandProcessor[RelationJob]):
    """Turns a batch of relation envelopes into one outcome each, in order."""

    dedup_prefix = "relation"
    result_model = RelationResult

    def _job(
        self, index: int, envelope: Envelope, dedup_id: str | None, target: str | int | None
    ) -> RelationJob:
        command, key = self._decoded(envelope, _keyed_relation)
        if command.action == "detach" and target is not None:
            # An owner that died chose this relation and may have released its key already:
            # the detach is finished on it.
            command = command.model_copy(update={"relation_id": int(target)})
        return RelationJob(
            index=index, envelope=envelope, command=command, dedup_id=dedup_id, order_key=key
        )

    async def _round(
        self, jobs: list[RelationJob], outcomes: list[Outcome | None]
    ) -> list[RelationJob]:
        """Run one round; return the jobs to try again in the next."""
        addressed = [job.command.relation_id for job in jobs if job.command.relation_id]
        known = await self._stores.relations.relations_by_ids(sorted(set(addressed)))
        for job in jobs:
            job.current = job.key = job.claimed_id = None
            if job.command.relation_id is not None:
                job.current = known.get(job.command.relation_id)
        ready = await self._guarded(jobs, outcomes, self._prepare)
        ready = await self._resolve(ready, outcomes)
        planned, deferred = await self._plan(ready, outcomes)
        landed = await self._landed(planned, self._stores.relations.write, outcomes)
        return [*landed, *deferred]

    async def _prepare(self, job: RelationJob) -> None:
        """Catalog checks, the relation addressed by id, authorization and the weights."""
        command, catalog = job.command, self._stores.catalog
        account = await catalog.account(command.account_id)
        if account is None:
            raise NotFound(f"account {command.account_id} not found")
        account.check_message_size(job.envelope.body)
        rel_id = command.rel_id
        if command.relation_id is not None:
            relation = job.current
            if relation is None or relation.account_id != command.account_id:
                raise NotFound(f"relation {command.relation_id} not found")
            if rel_id is not None and rel_id != relation.rel_id:
                raise NotFound(f"relation {command.relation_id} is not of relation type {rel_id}")
            job.key, rel_id = relation.key, relation.rel_id
        types = await catalog.relation_types(command.account_id)
        job.rtype = relation_type_of(types, rel_id, command.account_id)
        await authorize(
            Access(
                command.account_id,
                [job.rtype.db_a, job.rtype.db_b],
                "write",
                command.token,
                job.envelope.user_id,
            ),
            catalog,
        )
        job.weights = checked_weights(job.rtype, command.weights)

    async def _resolve(
        self, jobs: list[RelationJob], outcomes: list[Outcome | None]
    ) -> list[RelationJob]:
        """Find both profiles of every job addressed by profiles, then its relation."""
        by_profiles = await self._guarded(
            [job for job in jobs if job.key is None], outcomes, self._sides_of
        )
        sides = [side for job in by_profiles for side in job.sides]
        lookup = await look_up(self._stores.profiles, sides)
        position = 0
        for job in by_profiles:
            try:
                ids = []
                for side in job.sides:
                    found = lookup.found[position]
                    position += 1
                    ids.append(existing_profile(side, found, lookup).profile_id)
            except Refusal as refusal:
                outcomes[job.index] = self._refused_job(job, refusal)
                continue
            assert job.rtype is not None
            job.profile_ids = (ids[0], ids[1])
            job.key = relation_key(job.rtype.rel_id, *job.profile_ids)
        keys = [job.key for job in by_profiles if job.key is not None]
        relations, claimed = await self._stores.relations.relations_by_keys(keys)
        for job in by_profiles:
            if job.key is not None:
                job.current, job.claimed_id = relations.get(job.key), claimed.get(job.key)
        return [job for job in jobs if job.key is not None]

    async def _sides_of(self, job: RelationJob) -> None:
        """What to look up for profile A (in the type's database A) and profile B."""
        command, rtype = job.command, job.rtype
        assert rtype is not None
        assert command.profile_a is not None
        assert command.profile_b is not None
        job.sides = [
            await request_for(self._stores.catalog, ProfileKeys.of(keys, db_id), command.account_id)
            for keys, db_id in ((command.profile_a, rtype.db_a), (command.profile_b, rtype.db_b))
        ]

    async def _plan(
        self, jobs: list[RelationJob], outcomes: list[Outcome | None]
    ) -> tuple[list[tuple[RelationJob, RelationWrite]], list[RelationJob]]:
        """Plan each job on its relation; a second job on one relation waits a round."""
        accepted: list[RelationJob] = []
        deferred: list[RelationJob] = []
        taken: set[str] = set()
        for job in jobs:
            assert job.key is not None
            if job.key in taken:
                deferred.append(job)
                continue
            try:
                refuse_if_inapplicable(job.command, job.current)
            except Refusal as refusal:
                outcomes[job.index] = self._refused_job(job, refusal)
                continue
            taken.add(job.key)
            accepted.append(job)
        # A creation finishes under the id its key already claims (one cut short), else new.
        unclaimed = [j for j in accepted if j.current is None and j.claimed_id is None]
        relations = self._stores.relations
        fresh = iter(await relations.new_relation_ids(len(unclaimed)) if unclaimed else [])
        now = self._clock()
        planned = []
        for job in accepted:
            new_id = None
            if job.current is None:
                new_id = job.claimed_id if job.claimed_id is not None else next(fresh)
            planned.append((job, plan_relation(job, new_id, now)))
        return planned, deferred


def _keyed_relation(raw: dict[str, Any]) -> tuple[RelationCommand, str]:
    command = decode_relation(raw)
    return command, _order_key(command)


def _order_key(command: RelationCommand) -> str:
    """Commands with one key touch one relation; catalog-free, it also checks the keys."""
    if command.relation_id is not None:
        return f"relation:{command.relation_id}"
    assert command.profile_a is not None
    assert command.profile_b is not None
    side_a = order_key(ProfileKeys.of(command.profile_a, 0))
    side_b = order_key(ProfileKeys.of(command.profile_b, 0))
    return f"{command.rel_id}|{side_a}|{side_b}"
