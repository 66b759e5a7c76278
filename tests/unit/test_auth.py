from __future__ import annotations

import pytest

from worker.domain.shared.auth import Access, authorize
from worker.domain.shared.catalog import BrokerUser, Token, hash_token
from worker.errors import Forbidden, TokenRequired


class Catalog:
    """A catalog held in dicts: authorization is pure logic over catalog entries."""

    def __init__(self) -> None:
        self.tokens = {
            hash_token("write-token-0123456789"): Token(
                token_sha256=hash_token("write-token-0123456789"),
                account_id=1,
                name="w",
                db_ids=(10,),
            ),
            hash_token("read-token-01234567890"): Token(
                token_sha256=hash_token("read-token-01234567890"),
                account_id=1,
                name="r",
                scopes=("read",),
            ),
        }

    async def token(self, token_sha256: str) -> Token | None:
        return self.tokens.get(token_sha256)

    async def broker_user(self, user: str) -> BrokerUser | None:
        return BrokerUser(user="crm", account_id=1) if user == "crm" else None


async def test_write_token_on_its_database() -> None:
    await authorize(Access(1, [10], "write", "write-token-0123456789", None), Catalog())


@pytest.mark.parametrize(
    ("access", "error"),
    [
        (Access(1, [10], "write", None, None), TokenRequired),
        (Access(1, [10], "write", None, "stranger"), TokenRequired),
        (Access(1, [10], "write", "unknown-token-xxxxxxxx", None), Forbidden),
        (Access(2, [10], "write", "write-token-0123456789", None), Forbidden),
        (Access(1, [11], "write", "write-token-0123456789", None), Forbidden),
        (Access(1, [10], "write", "read-token-01234567890", None), Forbidden),
        (Access(2, [10], "write", None, "crm"), TokenRequired),
    ],
)
async def test_refusals(access: Access, error: type[Exception]) -> None:
    with pytest.raises(error):
        await authorize(access, Catalog())


async def test_bound_broker_user_needs_no_token() -> None:
    await authorize(Access(1, [10], "write", None, "crm"), Catalog())
