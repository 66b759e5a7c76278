"""The relation path for a batch: take over, decode, check, then rounds of resolve, plan,
write.

Like imports, commands run in rounds, and a command whose relation an earlier command of the
batch still has in hand waits for the next round, so commands on one relation apply in queue
order whether it is addressed by id or by its profiles. A write that lost a race is planned
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from worker.contract.relations import RelationResult, decode_relation
from worker.domain.envelope import Envelope, Outcome
from worker.domain.order import relation_order_key
from worker.domain.processing import Admitted, Batch, CommandProcessor
from worker.domain.relations.plan import (
    CheckedRelation,
    RelationJob,
    ResolvedRelation,
    plan_relation,
)
from worker.domain.relations.rules import checked_weights, refuse_if_inapplicable, relation_type_of
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.profile_lookup import existing_profile, look_up, request_for
from worker.domain.shared.relations import ProfileKeys, Relation, RelationWrite, relation_key
from worker.errors import InvalidCommand, NotFound, Refusal


class RelationProcessor(CommandProcessor):
    """Turns a batch of relation envelopes into one outcome each, in order."""

    kind = "relation"
    result_model = RelationResult

    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        batch = self._batch(envelopes)
        admitted = await batch.take_over()
        jobs = [job for each in admitted if (job := _decoded(each, batch)) is not None]
        known = await self._addressed(jobs)
        checked = [c for job in jobs if (c := await self._checked(job, known, batch)) is not None]
        for number in batch.rounds():
            if number > 0:  # an earlier round may have changed or removed an addressed relation
                known = await self._addressed([item.job for item in checked])
                checked = [c for item in checked if (c := _readdressed(item, known, batch))]
            resolved = await self._resolve(checked, batch)
            planned, _ = await self._plan(resolved, batch)
            await batch.write(planned, self._stores.relations)
            checked = [item for item in checked if batch.undecided(item.job)]
            if not checked:
                break
        return await batch.settled([item.job for item in checked])

    async def _addressed(self, jobs: Sequence[RelationJob]) -> dict[int, Relation]:
        """The relations the jobs address by id, as stored now."""
        ids = {job.command.relation_id for job in jobs if job.command.relation_id is not None}
        return await self._stores.relations.relations_by_ids(sorted(ids))

    async def _checked(
        self, job: RelationJob, known: dict[int, Relation], batch: Batch
    ) -> CheckedRelation | None:
        """The job past its checks, once per batch (None: refused)."""
        try:
            return await self._check(job, known)
        except Refusal as error:
            batch.refuse(job, error)
            return None

    async def _check(self, job: RelationJob, known: dict[int, Relation]) -> CheckedRelation:
        """Catalog checks, the relation addressed by id (among `known`), authorization, the
        weights, and what to look up for a relation addressed by profiles."""
        command, catalog = job.command, self._stores.catalog
        account = await catalog.account(command.account_id)
        if account is None:
            raise NotFound(f"account {command.account_id} not found")
        account.check_message_size(job.envelope.body)
        rel_id, addressed = command.rel_id, None
        if command.relation_id is not None:
            addressed = known.get(command.relation_id)
            if addressed is None or addressed.account_id != command.account_id:
                raise NotFound(f"relation {command.relation_id} not found")
            if rel_id is not None and rel_id != addressed.rel_id:
                raise NotFound(f"relation {command.relation_id} is not of relation type {rel_id}")
            rel_id = addressed.rel_id
        types = await catalog.relation_types(command.account_id)
        rtype = relation_type_of(types, rel_id, command.account_id)
        await authorize(
            Access(
                command.account_id,
                [rtype.db_a, rtype.db_b],
                "write",
                command.token,
                job.envelope.user_id,
            ),
            catalog,
        )
        weights = checked_weights(rtype, command.weights)
        if addressed is not None:
            return CheckedRelation(job, rtype, weights, addressed)
        assert command.profile_a is not None
        assert command.profile_b is not None
        keys_a = ProfileKeys.of(command.profile_a, rtype.db_a)
        keys_b = ProfileKeys.of(command.profile_b, rtype.db_b)
        side_a = await request_for(catalog, keys_a, command.account_id)
        side_b = await request_for(catalog, keys_b, command.account_id)
        return CheckedRelation(job, rtype, weights, None, (side_a, side_b))

    async def _resolve(
        self, checked: list[CheckedRelation], batch: Batch
    ) -> list[ResolvedRelation]:
        """Find both profiles of every job addressed by profiles, then its relation; a job
        addressed by id has its relation already."""
        pairs = await self._profile_pairs([c for c in checked if c.addressed is None], batch)
        keys = [key for key, _ in pairs.values()]
        relations, claimed = await self._stores.relations.relations_by_keys(keys)
        resolved = []
        for item in checked:
            if item.addressed is not None:
                resolved.append(ResolvedRelation(item, item.addressed.key, item.addressed))
            elif item.job.index in pairs:
                key, ids = pairs[item.job.index]
                current, claimed_id = relations.get(key), claimed.get(key)
                resolved.append(ResolvedRelation(item, key, current, ids, claimed_id))
        return resolved

    async def _profile_pairs(
        self, by_profiles: list[CheckedRelation], batch: Batch
    ) -> dict[int, tuple[str, tuple[str, str]]]:
        """By job index: the relation key and the ids of the existing profiles A and B (404
        or 409 for a side without exactly one)."""
        sides = [side for item in by_profiles for side in item.sides]
        lookup = await look_up(self._stores.profiles, sides)
        found = iter(lookup.found)
        pairs = {}
        for item in by_profiles:
            side_a, side_b = item.sides
            found_a, found_b = next(found), next(found)
            try:
                ids = (
                    existing_profile(side_a, found_a, lookup).profile_id,
                    existing_profile(side_b, found_b, lookup).profile_id,
                )
            except Refusal as error:
                batch.refuse(item.job, error)
                continue
            pairs[item.job.index] = (relation_key(item.rtype.rel_id, *ids), ids)
        return pairs

    async def _plan(
        self, resolved: list[ResolvedRelation], batch: Batch
    ) -> tuple[list[tuple[RelationJob, RelationWrite]], list[RelationJob]]:
        """Plan each job on its relation, in queue order; a job whose relation an earlier job
        still has in hand (planned, waiting, or held elsewhere) waits a round."""
        accepted: list[ResolvedRelation] = []
        waiting: list[RelationJob] = []
        taken: set[str] = set()
        for item in resolved:
            job = item.checked.job
            if item.key in taken:
                taken.add(item.key)
                waiting.append(job)
                continue
            try:
                refuse_if_inapplicable(job.command, item.current)
            except Refusal as error:
                batch.refuse(job, error)
                continue
            taken.add(item.key)
            accepted.append(item)
        # A creation finishes under the id its key already claims (one cut short), else new.
        unclaimed = [i for i in accepted if i.current is None and i.claimed_id is None]
        relations = self._stores.relations
        fresh = iter(await relations.new_relation_ids(len(unclaimed)) if unclaimed else [])
        now = self._clock()
        planned = []
        for item in accepted:
            new_id = None
            if item.current is None:
                new_id = item.claimed_id if item.claimed_id is not None else next(fresh)
            planned.append((item.checked.job, plan_relation(item, new_id, now)))
        return planned, waiting


def _readdressed(
    checked: CheckedRelation, known: dict[int, Relation], batch: Batch
) -> CheckedRelation | None:
    """A job checked in an earlier round, with the relation it addresses by id as stored now
    (None: removed since, and the job refused with 404)."""
    if checked.addressed is None:
        return checked
    relation_id = checked.addressed.relation_id
    if relation_id not in known:
        batch.refuse(checked.job, NotFound(f"relation {relation_id} not found"))
        return None
    return replace(checked, addressed=known[relation_id])


def _decoded(admitted: Admitted, batch: Batch) -> RelationJob | None:
    """The admitted command as a job (None: it does not validate, and is refused)."""
    try:
        command = decode_relation(admitted.raw)
        key = relation_order_key(command)
    except InvalidCommand as error:
        batch.refuse_undecoded(admitted, error)
        return None
    if command.action == "detach" and admitted.target is not None:
        # An earlier owner chose this relation: the detach is finished on it.
        command = command.model_copy(update={"relation_id": int(admitted.target)})
    return RelationJob(admitted.index, admitted.envelope, command, admitted.command_id, key)
