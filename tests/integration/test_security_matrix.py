"""The security matrix (SPEC §3, §8), end to end through the queues, one table row per case.

1. tokens x targets x operations (import, relation attach/strengthen/detach, query
   get/get_counter), each row with the code SPEC §3/§8 give it;
2. broker users bound in the catalog, and attempts to pass for another broker user: a
   `user_id` RabbitMQ refuses, and a forged `x-original-user-id` header, also across a retry;
3. secrets (tokens, broker and database passwords) never in logs, results or dead-letter
   reasons, in-process and from `profile-worker run`;
4. TLS URLs (`amqps://`, `mongodb://...?tls=true`, `mongodb+srv://`) accepted and passed through.

A table of commands is sent at once, to one worker, and each answer found by its correlation
id; a test reports every row that disagrees, by row id. The pure decision table is
`tests/unit/test_auth_matrix.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

import aiormq
import orjson
import pytest

from tests.integration.broker_admin import BrokerAdmin
from tests.integration.conftest import (
    OTHER_TOKEN,
    PARTNERS_TOKEN,
    READ_TOKEN,
    TOKEN,
    StartWorker,
    first_messages,
    new_id,
    worker_environment,
)
from tests.integration.services import ServiceUrls
from tests.support import LIVE
from worker.cli.failures import ExitCode
from worker.domain.shared.catalog import CatalogFile
from worker.domain.shared.ports import Inbox, Prior, ProfileStore, Stores, WriteStatus
from worker.domain.shared.profiles import ProfileWrite
from worker.errors import BrokerUnavailable
from worker.observability import JsonFormatter
from worker.runtime.client import CommandClient
from worker.runtime.connection import connect
from worker.runtime.replies import ORIGINAL_USER_HEADER
from worker.settings import Settings
from worker.store.fence import Fence
from worker.store.mongo import MongoStore

DB10_TOKEN = "test-customers-only-token-0123"
WRITE_ONLY_TOKEN = "test-write-only-token-0123456"
UNKNOWN_TOKEN = "test-unknown-token-0123456789"
NOWHERE = "0123456789abcdef01234567"
"""A profile id for targets that are refused before any profile is looked up."""

EXTRA_CATALOG = CatalogFile.model_validate(
    {
        "relation_types": [
            {
                "rel_id": 502,
                "account_id": 1,
                "name": "partner of partner",
                "db_a": 11,
                "db_b": 11,
                "properties": [{"name": "weight", "type": "number"}],
            }
        ],
        "tokens": [
            {"name": "c", "account_id": 1, "token": DB10_TOKEN, "db_ids": [10]},
            {"name": "wo", "account_id": 1, "token": WRITE_ONLY_TOKEN, "scopes": ["write"]},
        ],
    }
)


@pytest.fixture
async def matrix_catalog(store: MongoStore) -> None:
    """The test catalog plus a token of database 10 only, a write-only token and a relation
    type inside database 11."""
    await store.catalog.apply(EXTRA_CATALOG)


# Sending a table of commands at once.


@dataclass(frozen=True)
class Sent:
    queue: str
    body: dict[str, Any] | bytes
    user_id: str | None = None
    headers: dict[str, Any] | None = None
    message_id: str | None = None


async def exchange(client: CommandClient, table: Mapping[str, Sent]) -> dict[str, dict[str, Any]]:
    """Send every row's command, then collect every answer by its correlation id."""
    rows = {}
    for row, sent in table.items():
        correlation_id = await client.send(
            sent.queue,
            sent.body,
            message_id=sent.message_id or new_id(),
            user_id=sent.user_id,
            headers=sent.headers,
        )
        rows[correlation_id] = row
    replies = await client.replies(len(table), timeout=60)
    answers = {rows[str(reply.correlation_id)]: dict(reply) for reply in replies}
    assert set(answers) == set(table)
    return answers


def codes_of(answers: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {row: int(answer["error"]) for row, answer in answers.items()}


def email_for(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + "@example.com"


def with_token(body: dict[str, Any], token: str | None) -> dict[str, Any]:
    """`body` with `token`; none at all for a missing one."""
    return body if token is None else {**body, "token": token}


# 1. The token matrix.


@dataclass(frozen=True)
class Target:
    """Where the commands of a column go: an import's database, a relation type."""

    account_id: int
    db_id: int | None
    rel_id: int
    db_a: int
    db_b: int
    weights: tuple[tuple[str, int], ...]
    setup_token: str | None
    """A token that may do anything there, to prepare profiles; None: refused before any."""


TARGETS = {
    "a1-db10": Target(1, 10, 501, 10, 10, (("closeness", 1),), TOKEN),
    "a1-db11": Target(1, 11, 502, 11, 11, (("weight", 1),), TOKEN),
    "a1-db10+11": Target(1, None, 500, 10, 11, (("weight", 1),), TOKEN),
    "a2-db20": Target(2, 20, 600, 20, 20, (), OTHER_TOKEN),
    "a1-foreign": Target(1, 20, 600, 20, 20, (), None),  # account 2's database / relation type
}
TOKENS: dict[str, str | None] = {
    "write-all": TOKEN,
    "read-only": READ_TOKEN,
    "db10-only": DB10_TOKEN,
    "db11-only": PARTNERS_TOKEN,
    "write-only": WRITE_ONLY_TOKEN,
    "other-account": OTHER_TOKEN,
    "unknown": UNKNOWN_TOKEN,
    "empty": "",
    "missing": None,
}


def codes(*per_target: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """(write, read) codes, one pair per target in TARGETS' order."""
    return dict(zip(TARGETS, per_target, strict=True))


# A database or relation type that is not the account's is 404 whoever asks: the catalog is
# checked before the credentials.
# fmt: off
EXPECTED: dict[str, dict[str, tuple[int, int]]] = {
    #                     a1-db10     a1-db11     a1-db10+11  a2-db20     a1-foreign
    "write-all":     codes((0, 0),     (0, 0),     (0, 0),     (403, 403), (404, 404)),
    "read-only":     codes((403, 0),   (403, 0),   (403, 0),   (403, 403), (404, 404)),
    "db10-only":     codes((0, 0),     (403, 403), (403, 403), (403, 403), (404, 404)),
    "db11-only":     codes((403, 403), (0, 0),     (403, 403), (403, 403), (404, 404)),
    "write-only":    codes((0, 403),   (0, 403),   (0, 403),   (403, 403), (404, 404)),
    "other-account": codes((403, 403), (403, 403), (403, 403), (0, 0),     (404, 404)),
    "unknown":       codes((403, 403), (403, 403), (403, 403), (403, 403), (404, 404)),
    "empty":         codes((401, 401), (401, 401), (401, 401), (401, 401), (404, 404)),
    "missing":       codes((401, 401), (401, 401), (401, 401), (401, 401), (404, 404)),
}
# fmt: on
OPERATIONS = {
    "import": 0,
    "attach": 0,
    "strengthen": 0,
    "detach": 0,
    "get": 1,
    "get_counter": 1,
}
"""Each operation of SPEC §4-§6, and whether it needs `write` (0) or `read` (1)."""
READS = ("get", "get_counter")


def matrix(operation: str) -> dict[str, tuple[str, str]]:
    """The rows of one operation: id → (token, target); no import into two databases."""
    return {
        f"{operation}/{target}/{token}": (token, target)
        for token in TOKENS
        for target, where in TARGETS.items()
        if operation != "import" or where.db_id is not None
    }


def expected(operation: str) -> dict[str, int]:
    return {
        row: EXPECTED[token][target][OPERATIONS[operation]]
        for row, (token, target) in matrix(operation).items()
    }


def import_body(account_id: int, db_id: int, token: str | None, email: str) -> dict[str, Any]:
    body = {"account_id": account_id, "db_id": db_id, "email": email, "data": {"_fname": "M"}}
    return with_token(body, token)


def command_for(
    settings: Settings, operation: str, where: Target, token: str | None, a: str, b: str
) -> Sent:
    """One command of `operation` on `where`: an import of a new profile (`a` is its email),
    or a relation command / query on profiles `a` and `b`."""
    if operation == "import":
        assert where.db_id is not None
        body = import_body(where.account_id, where.db_id, token, a)
        return Sent(settings.import_queue, body)
    addressed = {"account_id": where.account_id, "rel_id": where.rel_id}
    if operation in READS:
        query = {"method": operation, **addressed, "profile_id": a}
        return Sent(settings.relations_query_queue, with_token(query, token))
    body = {"action": operation, **addressed, "profile_a": {"profile_id": a}}
    body["profile_b"] = {"profile_id": b}
    if operation != "detach":
        body["weights"] = dict(where.weights)
    return Sent(settings.relations_queue, with_token(body, token))


async def new_profiles(
    client: CommandClient, settings: Settings, wanted: Mapping[str, tuple[Target, int]]
) -> dict[str, str]:
    """A new profile for each name, in (target's account, database): name → profile id."""
    table = {}
    for name, (where, db_id) in wanted.items():
        body = import_body(where.account_id, db_id, where.setup_token, email_for(name))
        table[name] = Sent(settings.import_queue, body)
    answers = await exchange(client, table)
    assert set(codes_of(answers).values()) <= {0}, answers
    return {name: str(answer["profile_id"]) for name, answer in answers.items()}


async def related(
    client: CommandClient, settings: Settings, pairs: Mapping[str, tuple[Target, str, str]]
) -> None:
    """A relation between each pair, made with its target's own token."""
    table = {
        name: command_for(settings, "strengthen", where, where.setup_token, a, b)
        for name, (where, a, b) in pairs.items()
    }
    answers = await exchange(client, table)
    assert set(codes_of(answers).values()) <= {0}, answers


async def prepared(
    client: CommandClient, settings: Settings, operation: str, rows: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """What each row's command addresses (row → target): for an import, a new email; for a
    relation command, a profile A of its own and its target's profile B, related already for
    a detach; for a query, its target's A and B, related."""
    if operation == "import":
        return {row: (email_for(row), "") for row in rows}
    reads = operation in READS
    real = {name for name, where in TARGETS.items() if where.setup_token is not None}
    wanted = {f"b:{name}": (TARGETS[name], TARGETS[name].db_b) for name in real}
    a_of = {row: f"a:{target}" if reads else f"a:{row}" for row, target in rows.items()}
    for row, target in rows.items():
        if target in real:
            wanted[a_of[row]] = (TARGETS[target], TARGETS[target].db_a)
    ids = await new_profiles(client, settings, wanted)
    pairs = {
        row: (ids[a_of[row]], ids[f"b:{target}"]) if target in real else (NOWHERE, NOWHERE)
        for row, target in rows.items()
    }
    if operation == "detach" or reads:
        targets = {a_of[row]: (TARGETS[target], *pairs[row]) for row, target in rows.items()}
        await related(client, settings, {a: made for a, made in targets.items() if a in ids})
    return pairs


@pytest.mark.usefixtures("worker", "matrix_catalog")
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_token_matrix(
    operation: str, client: CommandClient, settings: Settings, mongo: Any
) -> None:
    rows = matrix(operation)
    pairs = await prepared(client, settings, operation, {r: t for r, (_, t) in rows.items()})
    table = {
        row: command_for(settings, operation, TARGETS[target], TOKENS[token], *pairs[row])
        for row, (token, target) in rows.items()
    }
    answers = await exchange(client, table)

    assert codes_of(answers) == expected(operation)
    allowed = {row for row, code in expected(operation).items() if code == 0}
    assert await effective(operation, answers, pairs, rows, mongo) == allowed, (
        "exactly the allowed rows had their effect (or read the relation that is there)"
    )


async def effective(
    operation: str,
    answers: Mapping[str, Mapping[str, Any]],
    pairs: Mapping[str, tuple[str, str]],
    rows: Mapping[str, tuple[str, str]],
    mongo: Any,
) -> set[str]:
    """The rows whose command had its effect, seen in the database (a query: read its
    target's one relation)."""
    if operation == "import":
        stored = {doc["fields"].get("email") for doc in await mongo.profiles.find({}).to_list()}
        return {row for row in rows if email_for(row) in stored}
    if operation in READS:
        return {row for row, answer in answers.items() if read_one_relation(operation, answer)}
    docs = await mongo.relations.find(LIVE).to_list()
    stored = {(doc["rel_id"], doc["profile_id_a"]) for doc in docs}
    there = {row for row, (_, t) in rows.items() if (TARGETS[t].rel_id, pairs[row][0]) in stored}
    if operation != "detach":
        return there
    related_before = {row for row, (_, t) in rows.items() if TARGETS[t].setup_token is not None}
    return related_before - there


def read_one_relation(operation: str, answer: Mapping[str, Any]) -> bool:
    """Whether a query's answer shows the one relation of its target (a refusal shows none)."""
    if answer["error"] != 0:
        assert "data" not in answer, answer
        return False
    if operation == "get":
        return answer["total_count"] == 1 and len(answer["data"]) == 1
    return bool(answer["data"]["total"] == 1)


# 2. Broker users.

REPLY_QUEUES = r"^amq\.gen-.*"
DEFAULT_EXCHANGE = r"^amq\.default$"
"""Producers publish through the default exchange: RabbitMQ checks `write` on it."""


def with_login(url: str, user: str, password: str) -> str:
    """`url` with another user and password (percent-encoded)."""
    parts = urlsplit(url)
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    netloc = f"{login}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class BrokerUsers:
    """Broker users of the test: `bound` is bound to account 1 in the catalog and `mallory`
    to none; `partner` is bound to account 2 in the catalog only (it never connects)."""

    bound: str
    mallory: str
    partner: str
    password: str
    amqp_url: str

    def url(self, user: str) -> str:
        return with_login(self.amqp_url, user, self.password)


@pytest.fixture
def broker_users(services: ServiceUrls, settings: Settings) -> Iterator[BrokerUsers]:
    """Producers with their own reply queues only, publishing through the default exchange."""
    admin = BrokerAdmin(services.management_url, services.amqp_url)
    suffix = uuid.uuid4().hex[:8]
    users = BrokerUsers(
        f"pw-bound-{suffix}",
        f"pw-mallory-{suffix}",
        f"pw-partner-{suffix}",
        f"producer-{uuid.uuid4().hex}",
        settings.amqp_url,
    )
    for name in (users.bound, users.mallory):
        admin.add_user(
            name, users.password, configure=REPLY_QUEUES, write=DEFAULT_EXCHANGE, read=REPLY_QUEUES
        )
    yield users
    for name in (users.bound, users.mallory):
        with contextlib.suppress(Exception):
            admin.delete_user(name)


@pytest.fixture
async def bound_users(store: MongoStore, broker_users: BrokerUsers) -> BrokerUsers:
    """The broker users, with `bound` and `partner` bound in the catalog."""
    bindings = [
        {"user": broker_users.bound, "account_id": 1},
        {"user": broker_users.partner, "account_id": 2},
    ]
    await store.catalog.apply(CatalogFile.model_validate({"broker_users": bindings}))
    return broker_users


def user_named(role: str | None, users: BrokerUsers, settings: Settings) -> str | None:
    names = {"bound": users.bound, "mallory": users.mallory, "partner": users.partner}
    return settings.broker_user if role == "worker" else names.get(role or "")


B, M, A1, A2 = "bound", "mallory", "a1-db10", "a2-db20"
BROKER_ROWS: list[tuple[str, str, str | None, str | None, str | None, str, int]] = [
    # (case, publisher, user_id, x-original-user-id, token, target, code)
    ("bound user, no token, its account", B, B, None, None, A1, 0),
    ("bound user, no token, another account", B, B, None, None, A2, 401),
    ("bound user, that account's token", B, B, None, OTHER_TOKEN, A2, 0),
    ("bound user, unknown token, its account", B, B, None, UNKNOWN_TOKEN, A1, 0),
    ("bound user, unknown token, another account", B, B, None, UNKNOWN_TOKEN, A2, 403),
    ("bound user without user_id", B, None, None, None, A1, 401),
    ("unbound user, no token", M, M, None, None, A1, 401),
    ("unbound user, token", M, M, None, TOKEN, A1, 0),
    ("unbound user, header of a bound user", M, M, B, None, A1, 401),
    ("unbound user, header of the worker", M, M, "worker", None, A1, 401),
    ("no user_id, header of a bound user", M, None, B, None, A1, 401),
    ("no user_id, header of the worker", M, None, "worker", None, A1, 401),
    ("no user_id, header of account 2's bound user", M, None, "partner", None, A2, 401),
    ("header of a bound user, another account's token", M, M, B, OTHER_TOKEN, A1, 403),
]
BROKER_OPERATIONS = ("import", "strengthen", "get")


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("operation", BROKER_OPERATIONS)
async def test_broker_user_matrix(
    operation: str,
    bound_users: BrokerUsers,
    client: CommandClient,
    settings: Settings,
    mongo: Any,
) -> None:
    rows = {f"{operation}/{row[0]}": row for row in BROKER_ROWS}
    pairs = await prepared(client, settings, operation, {r: row[5] for r, row in rows.items()})
    tables: dict[str, dict[str, Sent]] = {"bound": {}, "mallory": {}}
    for row, (_, publisher, user_id, header, token, target, _) in rows.items():
        sent = command_for(settings, operation, TARGETS[target], token, *pairs[row])
        forged = user_named(header, bound_users, settings)
        tables[publisher][row] = replace(
            sent,
            user_id=user_named(user_id, bound_users, settings),
            headers={ORIGINAL_USER_HEADER: forged} if forged else None,
        )
    answers: dict[str, dict[str, Any]] = {}
    for publisher, table in tables.items():
        login = bound_users.url(user_named(publisher, bound_users, settings) or "")
        async with CommandClient(login) as producer:
            answers |= await exchange(producer, table)

    assert codes_of(answers) == {row: spec[-1] for row, spec in rows.items()}
    allowed = {row for row, spec in rows.items() if spec[-1] == 0}
    targets = {row: ("", spec[5]) for row, spec in rows.items()}
    assert await effective(operation, answers, pairs, targets, mongo) == allowed


SPOOF_ROWS = [
    pytest.param("bound", 1, id="user_id of a bound user"),
    pytest.param("worker", 1, id="user_id of the worker"),
    pytest.param("partner", 2, id="user_id of a user bound in the catalog only"),
]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(("claimed", "account_id"), SPOOF_ROWS)
async def test_rabbitmq_refuses_a_user_id_of_another_user(
    claimed: str, account_id: int, bound_users: BrokerUsers, settings: Settings, mongo: Any
) -> None:
    db_id, token = (10, TOKEN) if account_id == 1 else (20, OTHER_TOKEN)
    impostor = user_named(claimed, bound_users, settings)
    spoofed = import_body(account_id, db_id, None, "spoofed@example.com")
    async with CommandClient(bound_users.url(bound_users.mallory)) as mallory:
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as refused:
            await mallory.send(settings.import_queue, spoofed, user_id=impostor)
        assert f"user_id property set to '{impostor}'" in str(refused.value)
        assert mallory.channel.is_closed

    async with CommandClient(bound_users.url(bound_users.mallory)) as mallory:
        marker = import_body(account_id, db_id, token, "marker@example.com")
        sent = await mallory.send(settings.import_queue, marker, user_id=bound_users.mallory)
        reply = await mallory.reply(timeout=30)
    assert (reply.correlation_id, reply["error"]) == (sent, 0), "only the marker was answered"
    assert await mongo.profiles.count_documents({"fields.email": "spoofed@example.com"}) == 0


class TroubledStore(MongoStore):
    """A store with planted failures that are not outages, so the worker retries (SPEC §3):
    the inbox fails the first recall of one message id (before anything about the command is
    decided), and profile writes of another message id always fail."""

    claim_fails_once_for: str | None = None
    writes_fail_for: str | None = None
    claim_failed = False

    def ports(self, fence: Fence | None = None) -> Stores:
        ports = super().ports(fence)
        return replace(
            ports,
            inbox=cast(Inbox, _TroubledInbox(self, ports.inbox)),
            profiles=cast(ProfileStore, _TroubledProfiles(self, ports.profiles)),
        )


class _TroubledInbox:
    def __init__(self, store: TroubledStore, inner: Inbox) -> None:
        self._store = store
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def take_over(self, command_ids: Sequence[str]) -> dict[str, Prior]:
        planted = self._store.claim_fails_once_for
        if planted and not self._store.claim_failed and _names(command_ids, planted):
            self._store.claim_failed = True
            raise RuntimeError("inbox hiccup")
        return await self._inner.take_over(command_ids)


class _TroubledProfiles:
    def __init__(self, store: TroubledStore, inner: ProfileStore) -> None:
        self._store = store
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        planted = self._store.writes_fail_for
        if planted and _names([write.command_id or "" for write in writes], planted):
            raise RuntimeError("disk says no")
        return await self._inner.write(writes)


def _names(command_ids: Sequence[str], message_id: str) -> bool:
    return any(command_id.endswith(f":{message_id}") for command_id in command_ids)


@pytest.fixture
async def troubled(settings: Settings) -> AsyncIterator[TroubledStore]:
    """Requested before `start_worker`, it closes after the workers stopped."""
    store = TroubledStore.from_settings(settings)
    yield store
    await store.close()


RETRY_ROWS = [
    pytest.param("bound", "bound", None, 1, 0, id="bound user keeps its identity"),
    pytest.param("mallory", "mallory", "bound", 1, 401, id="own user_id and a forged header"),
    pytest.param(
        "mallory",
        None,
        "partner",
        2,
        401,
        id="no user_id, forged header",
    ),
    pytest.param("mallory", None, None, 1, 401, id="no user_id, no header"),
]


@pytest.mark.parametrize(("publisher", "user_id", "header", "account_id", "code"), RETRY_ROWS)
async def test_identity_across_a_retry(
    publisher: str,
    user_id: str | None,
    header: str | None,
    account_id: int,
    code: int,
    troubled: TroubledStore,
    start_worker: StartWorker,
    bound_users: BrokerUsers,
    settings: Settings,
) -> None:
    """A tokenless command whose first attempt fails before it is decided is answered, after
    the retry, as its publisher's broker user alone allows."""
    message_id = new_id()
    troubled.claim_fails_once_for = message_id
    await start_worker(with_store=troubled)
    body = import_body(account_id, 10 if account_id == 1 else 20, None, "retried@example.com")
    forged = user_named(header, bound_users, settings)
    login = bound_users.url(user_named(publisher, bound_users, settings) or "")
    async with CommandClient(login) as producer:
        await producer.send(
            settings.import_queue,
            body,
            message_id=message_id,
            user_id=user_named(user_id, bound_users, settings),
            headers={ORIGINAL_USER_HEADER: forged} if forged else None,
        )
        reply = await producer.reply(timeout=30)
    assert troubled.claim_failed, "the first attempt failed and the command came back"
    assert reply["error"] == code, reply


# 3. Secrets never in logs, results or dead-letter reasons.

WRONG_SECRET = "secret-wrong-token-5b0e4f1c2d"
TYPED_SECRET = "secret-typed-token-9a7c3e1b0f"
FIELD_SECRET = "secret-field-token-6d2f8a4c1e"
BODY_SECRET = "secret-body-token-3e9b7d5a2c0"
NOT_JSON, FAILING = "token in a body that is not JSON", "right token, internal failure"
POISONED = "poisoned-command"
"""The message id whose profile writes always fail: retried, then answered 500."""


def log_rows(settings: Settings) -> dict[str, tuple[Sent, int]]:
    """Commands that carry secrets, each with the code it gets (case → (command, code))."""
    imports, target = settings.import_queue, TARGETS["a1-db10"]
    body = import_body(1, 10, TOKEN, "logged@example.com")
    relation = command_for(settings, "strengthen", target, WRONG_SECRET, NOWHERE, NOWHERE)
    query = command_for(settings, "get", target, WRONG_SECRET, NOWHERE, "")
    unknown_profile = command_for(settings, "get", target, TOKEN, NOWHERE, "")
    return {
        "right token": (Sent(imports, body), 0),
        "unknown token": (Sent(imports, {**body, "token": WRONG_SECRET}), 403),
        "read-only token": (Sent(imports, {**body, "token": READ_TOKEN}), 403),
        "another account's token": (Sent(imports, {**body, "token": OTHER_TOKEN}), 403),
        "token of the wrong type": (Sent(imports, {**body, "token": [TYPED_SECRET]}), 400),
        "token among the fields": (Sent(imports, {**body, "data": {"token": FIELD_SECRET}}), 400),
        NOT_JSON: (
            Sent(imports, b'{"account_id": 1, "token": "' + BODY_SECRET.encode() + b'", '),
            400,
        ),
        "token in an oversize body": (Sent(imports, {**body, "data": {"city": "x" * 9_000}}), 400),
        FAILING: (Sent(imports, body, message_id=POISONED), 500),
        "relation, unknown token": (relation, 403),
        "query, unknown token": (query, 403),
        "query, right token, unknown profile": (unknown_profile, 404),
    }


@dataclass(frozen=True)
class SecretUser:
    name: str
    password: str
    url: str


@pytest.fixture
def secret_user(services: ServiceUrls, settings: Settings) -> Iterator[SecretUser]:
    """A broker user for the worker, with a password that must never be shown (it needs
    percent-encoding in the URL, so both of its forms are looked for)."""
    admin = BrokerAdmin(services.management_url, services.amqp_url)
    name, password = f"pw-worker-{uuid.uuid4().hex[:8]}", f"s3cret/{uuid.uuid4().hex}"
    admin.add_user(name, password, configure=".*", write=".*", read=".*")
    yield SecretUser(name, password, with_login(settings.amqp_url, name, password))
    with contextlib.suppress(Exception):
        admin.delete_user(name)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line of the test, as `profile-worker run` writes them (JsonFormatter), at
    DEBUG for the worker and WARNING for the client libraries, as `configure_logging` sets."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    quiet = [logging.getLogger(name) for name in ("aio_pika", "aiormq", "pymongo")]
    levels = [root.level, *(logger.level for logger in quiet)]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    yield lines
    root.removeHandler(handler)
    for logger, level in zip([root, *quiet], levels, strict=True):
        logger.setLevel(level)


def leaks(places: Mapping[str, Sequence[str]], secrets: Mapping[str, str]) -> list[str]:
    """`where: which secret` for every secret found, in either of its URL forms."""
    forms = {name: {secret, quote(secret, safe="")} for name, secret in secrets.items()}
    return [
        f"{where}: {name}"
        for where, texts in places.items()
        for text in texts
        for name, variants in forms.items()
        if any(variant in text for variant in variants)
    ]


async def test_no_secret_in_logs_results_or_dead_letter_reasons(
    troubled: TroubledStore,
    start_worker: StartWorker,
    secret_user: SecretUser,
    settings: Settings,
    client: CommandClient,
    broker: Any,
    log_lines: list[str],
) -> None:
    troubled.writes_fail_for = POISONED
    await start_worker(
        with_store=troubled, with_settings=settings.model_copy(update={"amqp_url": secret_user.url})
    )
    rows = log_rows(settings)
    answers = await exchange(client, {case: sent for case, (sent, _) in rows.items()})
    assert codes_of(answers) == {case: code for case, (_, code) in rows.items()}
    dead = await first_messages(broker, f"{settings.import_queue}.dead", 2, timeout=30)

    broken, failing = (rows[case][0].body for case in (NOT_JSON, FAILING))
    assert sorted(copy.body for copy in dead) == sorted(
        [broken if isinstance(broken, bytes) else b"", orjson.dumps(failing)]
    ), "SPEC §3: the dead letter is the command as it came (with its token), for a human"
    assert any('"msg":"command failed"' in line for line in log_lines), "logs were captured"
    assert any('"msg":"dead-lettered"' in line for line in log_lines)
    secrets = {
        "write token": TOKEN,
        "read token": READ_TOKEN,
        "other account's token": OTHER_TOKEN,
        "unknown token": WRONG_SECRET,
        "ill-typed token": TYPED_SECRET,
        "token among the fields": FIELD_SECRET,
        "token in a broken body": BODY_SECRET,
        "broker password": secret_user.password,
    }
    places = {
        "log": log_lines,
        "result": [orjson.dumps(answer).decode() for answer in answers.values()],
        "dead-letter headers": [orjson.dumps(copy.headers, default=str).decode() for copy in dead],
    }
    assert leaks(places, secrets) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Run:
    """A `profile-worker run`: its settings, the secret in them, and how it ends: by itself
    with `exit_code`, or on SIGTERM once it logged `until`."""

    overrides: dict[str, str]
    secret: str
    exit_code: int
    until: str | None = None


def run_case(case: str, settings: Settings, user: SecretUser) -> Run:
    secret = f"pw-{uuid.uuid4().hex[:10]}"  # short: error texts may shorten long values
    amqp, mongodb = urlsplit(settings.amqp_url), urlsplit(settings.mongodb_url)
    database = f"mongodb://pw-nobody:{secret}@{mongodb.hostname}:{mongodb.port or 27017}/"
    runs = {
        "serving, broker password": lambda: Run(
            {"PW_AMQP_URL": user.url}, user.password, ExitCode.OK, until="ready"
        ),
        "broker refuses the password": lambda: Run(
            {"PW_AMQP_URL": with_login(settings.amqp_url, amqp.username or "guest", secret)},
            secret,
            ExitCode.CONFIGURATION,
        ),
        "amqps broker unreachable": lambda: Run(
            {"PW_AMQP_URL": f"amqps://{user.name}:{secret}@127.0.0.1:{free_port()}/"},
            secret,
            ExitCode.OK,
            until="broker unavailable; reconnecting",
        ),
        "database refuses the password": lambda: Run(
            {"PW_MONGODB_URL": database}, secret, ExitCode.CONFIGURATION
        ),
        "database unreachable": lambda: Run(
            {
                "PW_MONGODB_URL": f"mongodb://pw-nobody:{secret}@127.0.0.1:{free_port()}/",
                "PW_MONGODB_TIMEOUT_MS": "300",
            },
            secret,
            ExitCode.OK,
            until="database unavailable at start; retrying",
        ),
        "invalid broker URL": lambda: Run(
            {"PW_AMQP_URL": f"http://guest:{secret}@127.0.0.1/"}, secret, ExitCode.CONFIGURATION
        ),
        "invalid broker URL, DEBUG": lambda: Run(
            {"PW_AMQP_URL": f"http://guest:{secret}@127.0.0.1/", "PW_LOG_LEVEL": "DEBUG"},
            secret,
            ExitCode.CONFIGURATION,
        ),
    }
    return runs[case]()


RUN_CASES = [
    "serving, broker password",
    "broker refuses the password",
    "amqps broker unreachable",
    "database refuses the password",
    "database unreachable",
    "invalid broker URL",
    "invalid broker URL, DEBUG",
]


async def lines_until(process: asyncio.subprocess.Process, message: str) -> bytes:
    """What the process wrote to stderr up to its first log line with `message`."""
    assert process.stderr is not None
    seen = b""
    async with asyncio.timeout(30):
        while f'"msg":"{message}"'.encode() not in seen:
            line = await process.stderr.readline()
            assert line, f"ended before logging {message!r}: {seen.decode()}"
            seen += line
    return seen


@pytest.mark.usefixtures("store")  # the catalog the commands of "serving" need
@pytest.mark.parametrize("case", RUN_CASES)
async def test_run_never_shows_a_password(
    case: str, settings: Settings, secret_user: SecretUser, client: CommandClient
) -> None:
    run = run_case(case, settings, secret_user)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "run",
        env={**worker_environment(settings), **run.overrides},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        seen = await lines_until(process, run.until) if run.until else b""
        answers = {}
        if run.until == "ready":
            table = {
                token: Sent(settings.import_queue, import_body(1, 10, token, email_for(token)))
                for token in (TOKEN, WRONG_SECRET)
            }
            answers = codes_of(await exchange(client, table))
        if run.until:
            process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (seen + rest).decode()

    assert process.returncode == run.exit_code, stderr
    assert answers == ({TOKEN: 0, WRONG_SECRET: 403} if run.until == "ready" else {})
    assert stderr.strip(), "it said something"
    secrets = {"password": run.secret, "write token": TOKEN, "unknown token": WRONG_SECRET}
    assert leaks({"stderr": stderr.splitlines()}, secrets) == []


# 4. TLS URLs are accepted and passed through to the clients.

TLS_URLS = [
    pytest.param("amqp_url", "amqps://user:pass@broker.example.com:5671/vh", id="amqps"),
    pytest.param("amqp_url", "amqps://broker.example.com/", id="amqps, default port"),
    pytest.param("mongodb_url", "mongodb://user:pass@db.example.com:27017/?tls=true", id="tls"),
    pytest.param(
        "mongodb_url",
        "mongodb://db-1.example.com,db-2.example.com/?tls=true&tlsCAFile=/etc/ssl/ca.pem"
        "&replicaSet=rs0",
        id="tls, CA file, replica set",
    ),
    pytest.param("mongodb_url", "mongodb://db.example.com/?ssl=true", id="ssl=true"),
    pytest.param(
        "mongodb_url",
        "mongodb+srv://user:pass@cluster0.example.net/profiles?retryWrites=true",
        id="mongodb+srv",
    ),
]


@pytest.mark.parametrize(("name", "url"), TLS_URLS)
def test_settings_accept_tls_urls_unchanged(
    name: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"PW_{name.upper()}", url)
    from_environment = Settings()
    given = Settings(amqp_url=url) if name == "amqp_url" else Settings(mongodb_url=url)
    assert getattr(from_environment, name) == getattr(given, name) == url
    if name == "amqp_url":
        assert given.broker_user == (urlsplit(url).username or "guest")


MONGODB_TLS = [
    pytest.param("?tls=true", True, id="tls=true"),
    pytest.param("?ssl=true", True, id="ssl=true"),
    pytest.param("?tls=true&tlsAllowInvalidCertificates=true", True, id="tls, any certificate"),
    pytest.param("", False, id="no tls"),
]


@pytest.mark.parametrize(("query", "tls"), MONGODB_TLS)
async def test_the_database_client_gets_the_tls_option(query: str, tls: bool) -> None:
    """PyMongo connects lazily: the client is made, and asked, without any server."""
    settings = Settings(mongodb_url=f"mongodb://user:pass@127.0.0.1:{free_port()}/{query}")
    store = MongoStore.from_settings(settings)
    try:
        assert (store._client.options.pool_options._ssl_context is not None) is tls
    finally:
        await store.close()


class Probe:
    """A TCP server that keeps the first bytes each client sends: it shows whether a client
    began with a TLS handshake (a ClientHello record) or in the clear. It hangs up at once."""

    def __init__(self) -> None:
        self.first: list[bytes] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self.first.append(await asyncio.wait_for(reader.read(64), 5))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        async with server:
            yield int(server.sockets[0].getsockname()[1])


def began_with(first: bytes) -> str:
    if first[:2] == b"\x16\x03":
        return "tls"
    if first.startswith(b"AMQP"):
        return "amqp"
    return repr(first[:16])


@pytest.mark.parametrize(
    ("url", "first"),
    [
        pytest.param("amqps://user:pass@127.0.0.1:{port}/vh", "tls", id="amqps"),
        pytest.param("amqp://user:pass@127.0.0.1:{port}/vh", "amqp", id="amqp"),
    ],
)
async def test_amqps_reaches_the_wire_as_tls(url: str, first: str) -> None:
    """The URL reaches aio-pika as given: an `amqps://` broker is spoken to in TLS, and one
    that hangs up is unavailable (retried), not a configuration error."""
    probe = Probe()
    async with probe.serving() as port:
        with pytest.raises(BrokerUnavailable):
            await connect(url.format(port=port), "tls probe")
    assert [began_with(data) for data in probe.first] == [first]
