"""Processors on the in-memory store, driven as the consumer drives them: a batch of envelopes
in, one outcome each out, then `complete` once the answers count as published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal, cast

import orjson

from tests.support import TOKEN, ManualClock
from worker.domain.envelope import Answered, Deferred, Envelope, Outcome, Refused, Replayed
from worker.domain.imports.processor import ImportProcessor
from worker.domain.queries.processor import QueryProcessor
from worker.domain.relations.processor import RelationProcessor
from worker.domain.shared.relations import Relation
from worker.store.memory import MemoryStore

MAX_MESSAGE_BYTES = 65_536
LEASE_SECONDS = 60.0


def envelope(body: dict[str, Any] | bytes, message_id: str | None = None, **extra: Any) -> Envelope:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Envelope(body=raw, message_id=message_id, **extra)


def result_of(outcome: Outcome) -> dict[str, Any]:
    """The answer as the runtime sends it; {} for an outcome that answers nothing now."""
    match outcome:
        case Answered(result) | Refused(result=result) | Replayed(result):
            answer: dict[str, Any] = orjson.loads(result.encode())
            return answer
    return {}


def code_of(outcome: Outcome) -> int:
    """The answer's code; 500 for an outcome that answers nothing now."""
    return int(result_of(outcome).get("error", 500))


def events_of(outcome: Outcome) -> list[dict[str, Any]]:
    """The events published with the answer, as the runtime sends them."""
    if isinstance(outcome, Answered):
        return [orjson.loads(event.encode()) for event in outcome.events]
    return []


def import_command(email: str | None = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    """An import of account 1, database 10, matched by email."""
    body: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN, "data": {"_fname": "A"}}
    if email is not None:
        body["email"] = email
    body.update(overrides)
    return body


def relation_command(action: str, a: str, b: str, **overrides: Any) -> dict[str, Any]:
    """A relation command of type 500 between two profiles given by id."""
    body: dict[str, Any] = {
        "action": action,
        "account_id": 1,
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "token": TOKEN,
    }
    body.update(overrides)
    return body


class World:
    """One in-memory store and its clock; processors made on it are separate owners, as
    worker processes would be."""

    def __init__(self, store: MemoryStore, clock: ManualClock) -> None:
        self.store = store
        self.clock = clock

    def imports(self, store: Any = None) -> ImportProcessor:
        return ImportProcessor(self._ports(store), self.clock, MAX_MESSAGE_BYTES)

    def relations(self, store: Any = None) -> RelationProcessor:
        return RelationProcessor(self._ports(store), self.clock, MAX_MESSAGE_BYTES)

    def queries(self) -> QueryProcessor:
        return QueryProcessor(self.store.ports(), MAX_MESSAGE_BYTES)

    def _ports(self, port: Any) -> Any:
        """The store's ports, with one replaced (e.g. profile writes that crash)."""
        ports = self.store.ports()
        if port is None:
            return ports
        name = cast(Literal["profiles", "relations"], port.port_name)
        return replace(ports, **{name: port})

    async def profile_id(self, email: str, db_id: int = 10, **data: Any) -> str:
        """A new profile, imported; its id."""
        [outcome] = await run(
            self.imports(),
            [envelope(import_command(email, db_id=db_id, data={"_fname": "P", **data}))],
        )
        assert code_of(outcome) == 0, outcome
        return str(result_of(outcome)["profile_id"])

    def fields(self, profile_id: str) -> dict[str, Any]:
        fields: dict[str, Any] = self.store.profiles.documents[profile_id].state.fields
        return fields

    def relations_stored(self) -> list[Relation]:
        return [document.state for document in self.store.relations.documents.values()]


async def run(
    processor: ImportProcessor | RelationProcessor | QueryProcessor,
    envelopes: Sequence[Envelope],
) -> list[Outcome]:
    """Process a batch and, as the consumer does once answers are published, complete it."""
    outcomes = await processor.process(envelopes)
    await processor.complete(outcomes)
    return outcomes


async def drained(
    processor: ImportProcessor | RelationProcessor,
    envelopes: Sequence[Envelope],
    batches: int = 20,
) -> list[Outcome]:
    """Process as the consumer does over several batches: the commands a batch defers come
    back first in the next, until every one is decided (or `batches` ran)."""
    outcomes: dict[int, Outcome] = {}
    pending = list(range(len(envelopes)))
    for _ in range(batches):
        decided = await run(processor, [envelopes[index] for index in pending])
        outcomes.update(zip(pending, decided, strict=True))
        pending = [i for i, o in zip(pending, decided, strict=True) if isinstance(o, Deferred)]
        if not pending:
            break
    return [outcomes[index] for index in range(len(envelopes))]


class CrashingWrites:
    """A port whose `write` dies once: after the real write landed, or before it was made;
    at the first write, or after `writes_before` writes went through."""

    def __init__(
        self, inner: Any, port_name: str, *, after_landing: bool, writes_before: int = 0
    ) -> None:
        self._inner = inner
        self.port_name = port_name
        self.after_landing = after_landing
        self._writes_left = writes_before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, writes: Any) -> Any:
        if self._writes_left:
            self._writes_left -= 1
            return await self._inner.write(writes)
        if self.after_landing:
            await self._inner.write(writes)
        raise WorkerDied("the worker died around its write")


class WorkerDied(Exception):
    """Stands for a process that stops between two steps."""
