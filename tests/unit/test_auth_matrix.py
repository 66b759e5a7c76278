"""The decision table of SPEC §8 on the test catalog's credentials, one row per case.

1. tokens x (account, databases) x read/write → allowed (0), 401 or 403;
2. broker users bound in the catalog, with and without tokens;
3. who a command counts as having been published by, on its first delivery and after the
   worker republished it to a retry queue (`x-original-user-id`).

The same questions are asked end to end, through the queues, in
`tests/integration/test_security_matrix.py`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Credentials
from worker.contract.imports import ImportResult
from worker.domain.envelope import Envelope, Failed, Outcome
from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.catalog import CatalogFile, Scope
from worker.errors import Forbidden, TokenRequired
from worker.runtime.delivery import Delivery
from worker.runtime.replies import ORIGINAL_USER_HEADER, Replies
from worker.runtime.topology import Route
from worker.settings import Settings

WRITE_ALL = "matrix-write-all-0123456789"
READ_ONLY = "matrix-read-only-0123456789"
DB10_ONLY = "matrix-db10-only-0123456789"
DB11_ONLY = "matrix-db11-only-0123456789"
WRITE_ONLY = "matrix-write-only-012345678"
OTHER_ACCOUNT = "matrix-other-account-0123456"
UNKNOWN = "matrix-unknown-token-012345"

CATALOG = CatalogFile.model_validate(
    {
        "accounts": [{"account_id": 1, "name": "Acme"}, {"account_id": 2, "name": "Other"}],
        "databases": [
            {"db_id": 10, "account_id": 1, "name": "customers"},
            {"db_id": 11, "account_id": 1, "name": "partners"},
            {"db_id": 20, "account_id": 2, "name": "theirs"},
        ],
        "tokens": [
            {"name": "all", "account_id": 1, "token": WRITE_ALL},
            {"name": "ro", "account_id": 1, "token": READ_ONLY, "scopes": ["read"]},
            {"name": "c", "account_id": 1, "token": DB10_ONLY, "db_ids": [10]},
            {"name": "p", "account_id": 1, "token": DB11_ONLY, "db_ids": [11]},
            {"name": "wo", "account_id": 1, "token": WRITE_ONLY, "scopes": ["write"]},
            {"name": "o", "account_id": 2, "token": OTHER_ACCOUNT},
        ],
        "broker_users": [
            {"user": "crm", "account_id": 1},
            {"user": "partner", "account_id": 2},
        ],
    }
)

TOKENS: dict[str, str | None] = {
    "write-all": WRITE_ALL,
    "read-only": READ_ONLY,
    "db10-only": DB10_ONLY,
    "db11-only": DB11_ONLY,
    "write-only": WRITE_ONLY,
    "other-account": OTHER_ACCOUNT,
    "unknown": UNKNOWN,
    "empty": "",
    "missing": None,
}
TARGETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "a1-db10": (1, (10,)),
    "a1-db11": (1, (11,)),
    "a1-db10+11": (1, (10, 11)),  # a relation type between the two, or a query over both
    "a2-db20": (2, (20,)),
}


def codes(*per_target: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """(write, read) codes, one pair per target in TARGETS' order."""
    return dict(zip(TARGETS, per_target, strict=True))


# fmt: off
EXPECTED: dict[str, dict[str, tuple[int, int]]] = {
    #                     a1-db10     a1-db11     a1-db10+11  a2-db20
    "write-all":     codes((0, 0),     (0, 0),     (0, 0),     (403, 403)),
    "read-only":     codes((403, 0),   (403, 0),   (403, 0),   (403, 403)),
    "db10-only":     codes((0, 0),     (403, 403), (403, 403), (403, 403)),
    "db11-only":     codes((403, 403), (0, 0),     (403, 403), (403, 403)),
    "write-only":    codes((0, 403),   (0, 403),   (0, 403),   (403, 403)),
    "other-account": codes((403, 403), (403, 403), (403, 403), (0, 0)),
    "unknown":       codes((403, 403), (403, 403), (403, 403), (403, 403)),
    "empty":         codes((401, 401), (401, 401), (401, 401), (401, 401)),
    "missing":       codes((401, 401), (401, 401), (401, 401), (401, 401)),
}
# fmt: on

SCOPES: tuple[Scope, ...] = ("write", "read")
TOKEN_ROWS = [
    pytest.param(token, target, scope, EXPECTED[token][target][SCOPES.index(scope)])
    for token in TOKENS
    for target in TARGETS
    for scope in SCOPES
]


async def decision(access: Access) -> int:
    """What `authorize` decides, as the result code it leads to."""
    try:
        await authorize(access, Credentials(CATALOG))
    except TokenRequired:
        return 401
    except Forbidden:
        return 403
    return 0


@pytest.mark.parametrize(
    ("token", "target", "scope", "code"),
    TOKEN_ROWS,
    ids=[f"{p.values[0]}/{p.values[1]}/{p.values[2]}" for p in TOKEN_ROWS],
)
async def test_token_matrix(token: str, target: str, scope: Scope, code: int) -> None:
    account_id, db_ids = TARGETS[target]
    assert await decision(Access(account_id, db_ids, scope, TOKENS[token], None)) == code


BROKER_ROWS: list[tuple[str, str | None, str | None, str, Scope, int]] = [
    # (case, broker user, token, target, scope, code)
    ("bound user, no token, its account", "crm", None, "a1-db10", "write", 0),
    ("bound user reads its account", "crm", None, "a1-db10+11", "read", 0),
    ("bound user, no token, another account", "crm", None, "a2-db20", "write", 401),
    ("bound user, that account's token", "crm", OTHER_ACCOUNT, "a2-db20", "write", 0),
    ("bound user, unknown token, its account", "crm", UNKNOWN, "a1-db10", "write", 0),
    ("bound user, read-only token, its account", "crm", READ_ONLY, "a1-db11", "write", 0),
    ("bound user, unknown token, another account", "crm", UNKNOWN, "a2-db20", "write", 403),
    ("other bound user, no token, its account", "partner", None, "a2-db20", "write", 0),
    ("other bound user, no token, account 1", "partner", None, "a1-db10", "read", 401),
    ("unbound user, no token", "stranger", None, "a1-db10", "write", 401),
    ("unbound user, token", "stranger", WRITE_ALL, "a1-db10", "write", 0),
    ("unbound user, unknown token", "stranger", UNKNOWN, "a1-db10", "write", 403),
    ("empty user name", "", None, "a1-db10", "write", 401),
    ("user name differing in case", "CRM", None, "a1-db10", "write", 401),
]  # fmt: skip


@pytest.mark.parametrize(
    ("user", "token", "target", "scope", "code"),
    [row[1:] for row in BROKER_ROWS],
    ids=[row[0] for row in BROKER_ROWS],
)
async def test_broker_user_matrix(
    user: str | None, token: str | None, target: str, scope: Scope, code: int
) -> None:
    account_id, db_ids = TARGETS[target]
    assert await decision(Access(account_id, db_ids, scope, token, user)) == code


# Who a command counts as published by. RabbitMQ vouches for `user_id` (it must equal the
# connection's user); the worker republishes a command it could not decide yet under its own
# user, with the publisher's user in `x-original-user-id`, which it trusts only on messages
# published as itself. Nothing a producer puts in headers may make a retried command count as
# published by someone else, the worker's own user included.

WORKER = "pw-worker"
SETTINGS = Settings(amqp_url=f"amqp://{WORKER}:secret@127.0.0.1:5672/", retry_max_attempts=2)
ROUTE = Route("imports", "imports_result")
IDENTITY_ROWS = [
    # (case, user_id, headers, first delivery, after a republish)
    pytest.param("crm", {}, "crm", "crm", id="producer's own user"),
    pytest.param(
        "crm", {ORIGINAL_USER_HEADER: "partner"}, "crm", "crm", id="producer forges the header"
    ),
    pytest.param(None, {}, None, None, id="no user_id"),
    pytest.param(
        None,
        {ORIGINAL_USER_HEADER: "partner"},
        None,
        None,
        id="no user_id, forged header",
    ),
    pytest.param(WORKER, {}, WORKER, WORKER, id="the worker's own user"),
    pytest.param(
        WORKER, {ORIGINAL_USER_HEADER: "crm"}, "crm", "crm", id="the worker's republished copy"
    ),
]
OUTCOMES = [
    pytest.param(Failed("boom"), id="retry"),
]


def failure(envelope: Envelope, code: int, text: str) -> ImportResult:
    return ImportResult(error=code, error_text=text, message_id=envelope.message_id)


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize(("user_id", "headers", "first", "again"), IDENTITY_ROWS)
def test_identity_on_first_delivery_and_after_a_republish(
    user_id: str | None,
    headers: dict[str, Any],
    first: str | None,
    again: str | None,
    outcome: Outcome,
) -> None:
    replies = Replies(ROUTE, SETTINGS, failure)
    delivery = Delivery(b"{}", 1, "m1", "c1", "caller", user_id, headers)
    envelope = replies.envelope(delivery)
    assert envelope.user_id == first

    [copy] = replies.messages([delivery], [envelope], [outcome])
    assert copy.routing_key == ROUTE.retry_queue(1)
    assert copy.user_id == WORKER, "RabbitMQ accepts only the worker's own user from it"
    properties = (copy.message_id, copy.correlation_id, copy.reply_to, copy.user_id)
    redelivered = Delivery(copy.body, 2, *properties, copy.headers)
    assert replies.envelope(redelivered).user_id == again


BROKER_USER_ROWS = [
    pytest.param("amqp://pw-worker:secret@127.0.0.1:5672/", "pw-worker", id="amqp"),
    pytest.param("amqps://pw-worker:secret@broker.example.com:5671/vh", "pw-worker", id="amqps"),
    pytest.param("amqp://127.0.0.1/", "guest", id="no user: RabbitMQ's default"),
    pytest.param(
        "amqp://pw%40worker:secret@127.0.0.1/", "pw@worker", id="percent-encoded user name"
    ),
]


@pytest.mark.parametrize(("url", "user"), BROKER_USER_ROWS)
def test_the_worker_knows_its_broker_user_as_rabbitmq_names_it(url: str, user: str) -> None:
    """The user RabbitMQ vouches for in `user_id`, which the worker's own copies must carry."""
    assert Settings(amqp_url=url).broker_user == user
