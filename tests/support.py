"""What the store contract tests and the processor unit tests share: a small catalog, a clock
that moves only when told to, and a catalog reader for the pure tests of authorization."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.domain.shared.catalog import BrokerUser, CatalogFile, Token

LIVE = {"removed_at": {"$exists": False}}
"""The relations not removed: a removal leaves a tombstone until the sweep."""

TOKEN = "unit-write-token-0123456789"
READ_TOKEN = "unit-read-token-0123456789"
PARTNERS_TOKEN = "unit-partners-token-0123456789"
OTHER_TOKEN = "unit-other-account-token-0123"
SMALL_TOKEN = "unit-small-account-token-0123"

CATALOG = CatalogFile.model_validate(
    {
        "accounts": [
            {"account_id": 1, "name": "Acme"},
            {"account_id": 2, "name": "Other"},
            {"account_id": 3, "name": "Small", "max_profiles": 1},
        ],
        "databases": [
            {
                "db_id": 10,
                "account_id": 1,
                "name": "customers",
                "fields": [
                    {"name": "loyalty_id", "type": "string", "unique": True},
                    {"name": "city", "type": "string"},
                    {"name": "age", "type": "int"},
                    {"name": "vip", "type": "bool"},
                    {"name": "interests", "type": "tags"},
                ],
            },
            {"db_id": 11, "account_id": 1, "name": "partners"},
            {"db_id": 20, "account_id": 2, "name": "theirs"},
            {"db_id": 30, "account_id": 3, "name": "small"},
        ],
        "resources": [
            {"resource_id": 100, "account_id": 1, "name": "news", "channels": ["email"]},
            {"resource_id": 101, "account_id": 1, "name": "sms", "channels": ["sms"]},
            {"resource_id": 102, "account_id": 1, "name": "app", "channels": ["push"]},
        ],
        "relation_types": [
            {
                "rel_id": 500,
                "account_id": 1,
                "name": "customer of partner",
                "db_a": 10,
                "db_b": 11,
                "properties": [
                    {"name": "weight", "type": "number"},
                    {"name": "visits", "type": "number"},
                    {"name": "active", "type": "bool"},
                ],
            },
            {
                "rel_id": 501,
                "account_id": 1,
                "name": "family",
                "db_a": 10,
                "db_b": 10,
                "properties": [{"name": "closeness", "type": "number"}],
            },
            {"rel_id": 600, "account_id": 2, "name": "theirs", "db_a": 20, "db_b": 20},
        ],
        "tokens": [
            {"name": "w", "account_id": 1, "token": TOKEN},
            {"name": "r", "account_id": 1, "token": READ_TOKEN, "scopes": ["read"]},
            {"name": "p", "account_id": 1, "token": PARTNERS_TOKEN, "db_ids": [11]},
            {"name": "o", "account_id": 2, "token": OTHER_TOKEN},
            {"name": "s", "account_id": 3, "token": SMALL_TOKEN},
        ],
        "broker_users": [{"user": "crm", "account_id": 1}],
    }
)


class Credentials:
    """The `CredentialReader` port over a catalog file, for tests of authorization alone (the
    store's own catalog, `worker.store.catalog`, is tested with the store)."""

    def __init__(self, catalog: CatalogFile) -> None:
        self._tokens = {t.token_sha256: t for t in (entry.stored() for entry in catalog.tokens)}
        self._users = {entry.user: entry for entry in catalog.broker_users}

    async def token(self, token_sha256: str) -> Token | None:
        return self._tokens.get(token_sha256)

    async def broker_user(self, user: str) -> BrokerUser | None:
        return self._users.get(user)


class ManualClock:
    """The domain's clock in the processor tests: it moves only by `advance`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def strings_under(node: Any, keys: frozenset[str]) -> Iterator[str]:
    """Every string value of one of `keys`, at any depth of a JSON-like document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from strings_under(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from strings_under(item, keys)
