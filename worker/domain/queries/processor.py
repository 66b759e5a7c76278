"""Answers to `relations_query` (SPEC §6): get, get_counter, list, single.

Queries only read, so they need no inbox: a redelivered query is answered again. Counters are
computed by the database (a `$group` per property, a sorted limited read for the top), never
by loading every relation into the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from worker.contract.common import feedback_id_of, parse_json_object
from worker.contract.queries import SUCCESS, QueryAnswer, RelationQuery, decode_query
from worker.domain.envelope import Answered, Envelope, Outcome, Refused
from worker.domain.relations.rules import relation_type_of
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.catalog import RelationType
from worker.domain.shared.coercion import INT64_MAX, INT64_MIN
from worker.domain.shared.identity import check_profile_id, profile_xxh
from worker.domain.shared.matching import order_key
from worker.domain.shared.ports import RelationFilter, Stores
from worker.domain.shared.profile_lookup import existing_profile, look_up, request_for
from worker.domain.shared.relations import ProfileKeys, Relation
from worker.errors import InvalidCommand, NotFound, Refusal

CONCURRENT_QUERIES = 16


class QueryProcessor:
    """Answers a batch of queries concurrently (bounded); each answer goes to `reply_to`."""

    def __init__(self, stores: Stores, max_message_bytes: int) -> None:
        self._catalog, self._profiles, self._relations = (
            stores.catalog,
            stores.profiles,
            stores.relations,
        )
        self._max_message_bytes = max_message_bytes
        self._slots = asyncio.Semaphore(CONCURRENT_QUERIES)

    async def process(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(envelope) for envelope in envelopes)))

    async def complete(self, outcomes: Sequence[Outcome]) -> None:
        """Nothing to record: queries change nothing."""

    def failure(self, envelope: Envelope, code: int, text: str) -> QueryAnswer:
        return _answer(envelope, error=code, error_text=text)

    async def _one(self, envelope: Envelope) -> Outcome:
        """The answer; a refusal is answered too. A query with nowhere to be answered, or a
        body that is not even a JSON object, is also copied to `<queue>.dead` (SPEC §3)."""
        if not envelope.reply_to:
            nowhere = InvalidCommand("query without reply_to: nowhere to answer")
            return Refused(nowhere, self.failure(envelope, 400, nowhere.text), dead_letter=True)
        feedback_id = None
        try:
            raw = parse_json_object(envelope.body, self._max_message_bytes)
        except InvalidCommand as unparsable:
            result = self.failure(envelope, unparsable.code, unparsable.text)
            return Refused(unparsable, result, dead_letter=True)
        try:
            feedback_id = feedback_id_of(raw)
            query = decode_query(raw)
            async with self._slots:
                answer = await self._answer(query, envelope)
            return Answered(_answer(envelope, feedback_id=feedback_id, **answer))
        except Refusal as refusal:
            result = _answer(
                envelope, error=refusal.code, error_text=refusal.text, feedback_id=feedback_id
            )
            return Refused(refusal, result)

    async def _answer(self, query: RelationQuery, envelope: Envelope) -> dict[str, Any]:
        """The answer's fields; the envelope's user is the broker user the broker vouched
        for, if any."""
        account = await self._catalog.account(query.account_id)
        if account is None:
            raise NotFound(f"account {query.account_id} not found")
        account.check_message_size(envelope.body)
        user = envelope.user_id
        if query.method == "single":
            return await self._single(query, user)
        if query.method == "list":
            return await self._list(query, user)
        rtype = await self._relation_type(query, query.rel_id, user)
        profile_id = await self._profile_a(query, rtype)
        where = RelationFilter(query.account_id, rel_id=rtype.rel_id, profile_id_a=profile_id)
        if query.method == "get":
            return await self._page(where, query, by_priority=False)
        return {"data": await self._counter(where, rtype, profile_id, query.top_n)}

    async def _relation_type(
        self, query: RelationQuery, rel_id: int | None, user: str | None
    ) -> RelationType:
        types = await self._catalog.relation_types(query.account_id)
        rtype = relation_type_of(types, rel_id, query.account_id)
        await self._may_read(query, [rtype.db_a, rtype.db_b], user)
        return rtype

    async def _may_read(self, query: RelationQuery, db_ids: list[int], user: str | None) -> None:
        await authorize(Access(query.account_id, db_ids, "read", query.token, user), self._catalog)

    async def _profile_a(self, query: RelationQuery, rtype: RelationType) -> str:
        """The A profile the query's top-level matching keys name (by default `profile_id`)."""
        keys = ProfileKeys.of(query, rtype.db_a)
        order_key(keys)  # checks the mode's keys are present and well-formed
        request = await request_for(self._catalog, keys, query.account_id)
        lookup = await look_up(self._profiles, [request])
        return existing_profile(request, lookup.found[0], lookup).profile_id

    async def _single(self, query: RelationQuery, user: str | None) -> dict[str, Any]:
        assert query.relation_id is not None
        found = await self._relations.relations_by_ids([query.relation_id])
        relation = found.get(query.relation_id)
        if relation is None or relation.account_id != query.account_id:
            raise NotFound(f"relation {query.relation_id} not found")
        await self._may_read(query, [relation.db_a, relation.db_b], user)
        return {"data": item(relation)}

    async def _list(self, query: RelationQuery, user: str | None) -> dict[str, Any]:
        """Every relation touching the contact, on either side; a token must be able to read
        the databases of the relation types it may span."""
        contact = check_profile_id(query.contact or "", "contact")
        if query.rel_id is not None:
            await self._relation_type(query, query.rel_id, user)
        else:
            types = await self._catalog.relation_types(query.account_id)
            await self._may_read(
                query, sorted({db for t in types for db in (t.db_a, t.db_b)}), user
            )
        if await self._profiles.profile_account(contact) != query.account_id:
            raise NotFound(f"profile {contact} not found")
        where = RelationFilter(query.account_id, rel_id=query.rel_id, contact=contact)
        return await self._page(where, query, by_priority=True)

    async def _page(
        self, where: RelationFilter, query: RelationQuery, *, by_priority: bool
    ) -> dict[str, Any]:
        after = cursor_position(query.cursor, by_priority)
        page, total = await asyncio.gather(
            self._relations.relation_page(
                where, by_priority=by_priority, after=after, limit=query.limit + 1
            ),
            self._relations.count_relations(where),
        )
        more = len(page) > query.limit
        page = page[: query.limit]
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = (
                f"{last.priority}:{last.relation_id}" if by_priority else str(last.relation_id)
            )
        return {"data": [item(r) for r in page], "total_count": total, "next_cursor": next_cursor}

    async def _counter(
        self, where: RelationFilter, rtype: RelationType, profile_id: str, top_n: int
    ) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for prop in rtype.properties:
            having = replace(where, having=prop.name)
            count = await self._relations.count_relations(having)
            if prop.type == "bool":
                props[prop.name] = {"total": count, "sum": None, "top": None}
                continue
            total = await self._relations.property_sum(having, prop.name) if count else 0
            top = await self._relations.top_relations(having, prop.name, top_n) if count else []
            props[prop.name] = {
                "total": count,
                "sum": total,
                "top": [{"profile_id": r.profile_id_b, "value": r.props[prop.name]} for r in top],
            }
        return {
            "profile_id": profile_id,
            "profile_xxh": profile_xxh(profile_id),
            "total": await self._relations.count_relations(where),
            "props": props,
        }


def item(relation: Relation) -> dict[str, Any]:
    """One relation as `get`, `list` and `single` show it."""
    return {
        "relation_id": relation.relation_id,
        "rel_id": relation.rel_id,
        "profile_id_a": relation.profile_id_a,
        "xxh_a": profile_xxh(relation.profile_id_a),
        "profile_id_b": relation.profile_id_b,
        "xxh_b": profile_xxh(relation.profile_id_b),
        "db_a": relation.db_a,
        "db_b": relation.db_b,
        "props": {name: {"value": value} for name, value in relation.props.items()},
        "relation_to_a": relation.relation_to_a,
        "relation_to_b": relation.relation_to_b,
        "priority": relation.priority,
    }


def cursor_position(cursor: str | None, by_priority: bool) -> tuple[int, int] | None:
    """The position a cursor names: (priority, relation id), or relation id alone."""
    if cursor is None:
        return None
    parts = cursor.split(":")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != (2 if by_priority else 1) or not all(
        INT64_MIN <= number <= INT64_MAX for number in numbers
    ):
        raise InvalidCommand(f"invalid parameter 'cursor': '{cursor[:40]}'")
    return (numbers[0], numbers[1]) if by_priority else (0, numbers[0])


def _answer(envelope: Envelope, **fields: Any) -> QueryAnswer:
    """Only what applies to the method is set (and sent); `next_cursor` stays, as null, on the
    last page."""
    return QueryAnswer(
        **{
            "error": 0,
            "error_text": SUCCESS,
            "message_id": envelope.message_id,
            "correlation_id": envelope.correlation_id,
            **fields,
        }
    )
