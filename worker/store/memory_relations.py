"""Relations and their key claims in memory, as `worker.store.relations` keeps them."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from worker.domain.shared.ports import RelationFilter, WriteStatus
from worker.domain.shared.relations import INT64, Relation, RelationWrite
from worker.store.fence import Fence
from worker.store.markers import Target, marker_of, marker_time
from worker.store.memory_documents import (
    Clock,
    Document,
    fenced_write,
    markers_after,
    overtaken_document,
    read_stamped,
    still_as_read,
)
from worker.store.memory_inbox import MemoryInbox


class MemoryRelations:
    """Implements `worker.domain.shared.ports.RelationStore` like `worker.store.relations`."""

    def __init__(self, clock: Clock, inbox: MemoryInbox) -> None:
        self._clock = clock
        self._inbox = inbox
        self.documents: dict[int, Document] = {}
        self.removed: dict[int, Document] = {}
        """The markers of removed relations (see `worker.store.markers.removed_from`)."""
        self.claims: dict[str, int] = {}
        self._ids = itertools.count(1)
        """Shared by every fenced copy, like the MongoDB store's blocks."""
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MemoryRelations:
        """The same relations for the owner of one partition: its writes carry `fence`."""
        fenced = copy.copy(self)
        fenced._fence, fenced._inbox = fence, self._inbox.fenced(fence)
        return fenced

    async def relations_by_keys(
        self, keys: Sequence[str]
    ) -> tuple[dict[str, Relation], dict[str, int]]:
        claimed = {key: self.claims[key] for key in keys if key in self.claims}
        relations = await self.relations_by_ids(sorted(set(claimed.values())))
        found = {key: relations[rid] for key, rid in claimed.items() if rid in relations}
        return {key: relation for key, relation in found.items() if relation.key == key}, claimed

    async def relations_by_ids(self, relation_ids: Sequence[int]) -> dict[int, Relation]:
        return {
            relation_id: read_stamped(self.documents[relation_id])
            for relation_id in relation_ids
            if relation_id in self.documents
        }

    async def new_relation_ids(self, count: int) -> list[int]:
        return [next(self._ids) for _ in range(count)]

    async def write(self, writes: Sequence[RelationWrite]) -> list[WriteStatus]:
        """Answers ahead, the key of each creation, then each write if its relation is still
        as read; a deletion releases its key first and has landed once the relation is gone."""
        now = self._clock()
        self._inbox.write_ahead(
            (w.command_id, w.result, w.events, _target(w))
            for w in writes
            if w.command_id is not None
        )
        claimed = [self._claim(write) for write in writes]
        return [
            self._land(write, ok, marker_of(write.command_id), now)
            for write, ok in zip(writes, claimed, strict=True)
        ]

    def _claim(self, write: RelationWrite) -> bool:
        """Claim the key of a creation; False where the key names another relation."""
        if write.kind != "create":
            return True
        relation = write.relation
        owner = self.claims.setdefault(relation.key, relation.relation_id)
        return owner == relation.relation_id

    def _land(self, write: RelationWrite, claimed: bool, marker: str, now: datetime) -> WriteStatus:
        """Make one write if it may be made; whether it landed now, before, or not at all."""
        relation = write.relation
        document = self.documents.get(relation.relation_id)
        if overtaken_document(self._fence, document):
            return "fenced"
        if write.kind == "delete":
            if claimed and still_as_read(document, write.before):
                if self.claims.get(relation.key) == relation.relation_id:
                    del self.claims[relation.key]
                assert document is not None
                markers = {**document.markers, marker: marker_time(now)}
                self.removed[relation.relation_id] = Document(None, document.version, markers)
                del self.documents[relation.relation_id]
                return "applied"
            return "landed_before" if document is None else "conflict"
        if document is not None and marker in document.markers:
            return "landed_before"
        if claimed and still_as_read(document, write.before):
            written = _relation_written(write, document, marker, now, self._inbox.lease_seconds)
            self.documents[relation.relation_id] = fenced_write(document, written, self._fence)
            return "applied"
        return "conflict"

    async def count_relations(self, where: RelationFilter) -> int:
        return len(self._selected(where))

    async def relation_page(
        self, where: RelationFilter, *, by_priority: bool, after: tuple[int, int] | None, limit: int
    ) -> list[Relation]:
        relations = self._selected(where)
        if by_priority:
            relations.sort(key=lambda r: (-r.priority, r.relation_id))
            if after is not None:
                priority, last_id = after
                relations = [
                    r
                    for r in relations
                    if r.priority < priority or (r.priority == priority and r.relation_id > last_id)
                ]
        else:
            relations.sort(key=lambda r: r.relation_id)
            if after is not None:
                relations = [r for r in relations if r.relation_id > after[1]]
        return [read_stamped(self.documents[r.relation_id]) for r in relations[:limit]]

    async def property_sum(self, where: RelationFilter, name: str) -> int | float:
        """`$sum`: numbers only (bools and missing values are skipped); an integer sum that
        leaves 64 bits becomes a float, as MongoDB's does."""
        values = [r.props.get(name) for r in self._selected(where)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        total = sum(numbers)
        return float(total) if isinstance(total, int) and total not in INT64 else total

    async def top_relations(self, where: RelationFilter, name: str, limit: int) -> list[Relation]:
        relations = self._selected(replace(where, having=name))
        relations.sort(key=lambda r: (-r.props[name], r.relation_id))
        return [read_stamped(self.documents[r.relation_id]) for r in relations[:limit]]

    def _selected(self, where: RelationFilter) -> list[Relation]:
        return [
            document.state
            for document in self.documents.values()
            if _selects(where, document.state)
        ]


def _selects(where: RelationFilter, relation: Relation) -> bool:
    return (
        relation.account_id == where.account_id
        and where.rel_id in (None, relation.rel_id)
        and where.profile_id_a in (None, relation.profile_id_a)
        and where.contact in (None, relation.profile_id_a, relation.profile_id_b)
        and (where.having is None or where.having in relation.props)
    )


def _target(write: RelationWrite) -> Target:
    return Target("relations", write.relation.relation_id, removes=write.kind == "delete")


def _relation_written(
    write: RelationWrite,
    document: Document | None,
    marker: str,
    now: datetime,
    lease_seconds: float,
) -> Document:
    """The relation after a creation, or after an update of its values, labels and priority
    (what `worker.store.relations` sets)."""
    given = copy.deepcopy(write.relation)
    if document is None:
        return Document(replace(given, stamp=None), 1, {marker: marker_time(now)})
    relation = replace(
        document.state,
        props=given.props,
        relation_to_a=given.relation_to_a,
        relation_to_b=given.relation_to_b,
        priority=given.priority,
    )
    markers = markers_after(document, write.before, marker, now, lease_seconds)
    return Document(relation, document.version + 1, markers)
