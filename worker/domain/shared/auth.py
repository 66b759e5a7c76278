"""Who may do what (SPEC §8): a token of the account, or a broker user bound to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from worker.domain.shared.catalog import Scope, hash_token
from worker.domain.shared.ports import CredentialReader
from worker.errors import Forbidden, TokenRequired


@dataclass(frozen=True)
class Access:
    """One request for access: the account and databases touched, and the operation."""

    account_id: int
    db_ids: Iterable[int]
    scope: Scope
    token: str | None
    broker_user: str | None


async def authorize(access: Access, catalog: CredentialReader) -> None:
    """Return if allowed; raise TokenRequired (401) or Forbidden (403) otherwise."""
    if access.broker_user is not None:
        binding = await catalog.broker_user(access.broker_user)
        if binding is not None and binding.account_id == access.account_id:
            return
    if not access.token:
        raise TokenRequired("a token is required for this account")
    token = await catalog.token(hash_token(access.token))
    if token is None or token.account_id != access.account_id:
        raise Forbidden(f"token is not valid for account {access.account_id}")
    if access.scope not in token.scopes:
        raise Forbidden(f"token may not {access.scope}")
    if token.db_ids is not None:
        denied = sorted(set(access.db_ids) - set(token.db_ids))
        if denied:
            raise Forbidden(f"token may not access database {denied[0]}")
