"""Reading what a batch of match specs point at, in as few store calls as the batch allows.

Shared by the import path (which may then create a profile) and the relation path (which
needs an existing profile on each side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.domain.shared.catalog import FieldSpec
from worker.domain.shared.matching import MatchKeys, MatchSpec, candidates, match_spec
from worker.domain.shared.ports import CatalogReader, ProfileStore
from worker.domain.shared.profiles import Profile
from worker.errors import NotFound


@dataclass(frozen=True)
class LookupRequest:
    """One spec to resolve in `db_id`, plus claim keys whose owners the caller also needs."""

    db_id: int
    spec: MatchSpec
    extra_keys: tuple[str, ...] = ()
    schema: dict[str, FieldSpec] = field(default_factory=dict)
    """The database's fields, needed to resolve to an existing profile."""

    def claim_keys(self) -> list[str]:
        return [*self.spec.claim_keys(), *self.extra_keys]


@dataclass
class Lookup:
    """Claim owners, the ids each request's field queries found, and every profile involved."""

    owners: dict[str, str] = field(default_factory=dict)
    found: list[list[str]] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)


async def look_up(store: ProfileStore, requests: Sequence[LookupRequest]) -> Lookup:
    """One read for every claim key, a query per field match, one read per database."""
    keys = sorted({key for request in requests for key in request.claim_keys()})
    lookup = Lookup(owners=await store.owners(keys))
    wanted: dict[int, set[str]] = {}
    for request in requests:
        found: list[str] = []
        for query in request.spec.queries:
            found += await store.matching(
                request.db_id, query.field, query.value, all_of=query.all_of
            )
        lookup.found.append(found)
        ids = wanted.setdefault(request.db_id, set())
        ids.update(lookup.owners[key] for key in request.claim_keys() if key in lookup.owners)
        ids.update(found)
        if request.spec.profile_id:
            ids.add(request.spec.profile_id)
    for db_id, ids in wanted.items():
        if ids:
            lookup.profiles.update(await store.profiles(db_id, sorted(ids)))
    return lookup


async def request_for(catalog: CatalogReader, keys: MatchKeys, account_id: int) -> LookupRequest:
    """What to look up for the profile that matching keys name in `keys.db_id`, a database
    of the account (else 404)."""
    database = await catalog.database(keys.db_id)
    if database is None or database.account_id != account_id:
        raise NotFound(f"database {keys.db_id} not found in account {account_id}")
    schema = database.field_specs
    spec = match_spec(keys, schema, await catalog.resources(account_id))
    return LookupRequest(keys.db_id, spec, schema=schema)


def existing_profile(request: LookupRequest, found: Sequence[str], lookup: Lookup) -> Profile:
    """The one existing profile the request matches: 404 if none, 409 if several."""
    spec = request.spec
    if spec.profile_id is not None:
        profile = lookup.profiles.get(spec.profile_id)
    else:
        profile, _ = candidates(spec, request.schema, lookup.owners, lookup.profiles, found)
    if profile is None:
        raise NotFound(f"profile not found in database {request.db_id}")
    return profile
