"""Profiles and their unique-key claims in memory, as `worker.store.profiles` keeps them."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from worker.domain.shared.ports import WriteStatus
from worker.domain.shared.profiles import FieldChanges, Profile, ProfileWrite
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


class MemoryProfiles:
    """Implements `worker.domain.shared.ports.ProfileStore` like `worker.store.profiles`."""

    def __init__(self, clock: Clock, inbox: MemoryInbox) -> None:
        self._clock = clock
        self._inbox = inbox
        self.documents: dict[str, Document] = {}
        self.claims: dict[str, str] = {}
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> MemoryProfiles:
        """The same profiles for the owner of one partition: its writes carry `fence`."""
        fenced = copy.copy(self)
        fenced._fence, fenced._inbox = fence, self._inbox.fenced(fence)
        return fenced

    async def owners(self, keys: Sequence[str]) -> dict[str, str]:
        return {key: self.claims[key] for key in keys if key in self.claims}

    async def profiles(self, db_id: int, profile_ids: Sequence[str]) -> dict[str, Profile]:
        found = {}
        for profile_id in profile_ids:
            document = self.documents.get(profile_id)
            if document is not None and document.state.db_id == db_id:
                found[profile_id] = read_stamped(document)
        return found

    async def matching(self, db_id: int, field: str, value: Any, *, all_of: bool) -> list[str]:
        found = []
        for profile_id, document in self.documents.items():
            profile: Profile = document.state
            if profile.db_id == db_id and field in profile.fields:
                stored = profile.fields[field]
                if (_contains_all if all_of else _matches)(stored, value):
                    found.append(profile_id)
                    if len(found) == 2:
                        break
        return found

    async def count(self, account_id: int) -> int:
        return sum(1 for d in self.documents.values() if d.state.account_id == account_id)

    async def profile_account(self, profile_id: str) -> int | None:
        document = self.documents.get(profile_id)
        return None if document is None else int(document.state.account_id)

    async def write(self, writes: Sequence[ProfileWrite]) -> list[WriteStatus]:
        """Answers ahead, then claims, then each write if its profile is still as read; a
        write whose marker is on its profile already landed before."""
        now = self._clock()
        self._inbox.write_ahead(
            (w.command_id, w.result, w.events, Target("profiles", w.profile_id))
            for w in writes
            if w.command_id is not None
        )
        claimed = self._claim(writes)
        statuses: list[WriteStatus] = []
        for write, ok in zip(writes, claimed, strict=True):
            marker = marker_of(write.command_id)
            document = self.documents.get(write.profile_id)
            status: WriteStatus = "conflict"
            if overtaken_document(self._fence, document):
                status = "fenced"
            elif document is not None and marker in document.markers:
                status = "landed_before"
            elif ok and still_as_read(document, write.before):
                written = _written(write, document, marker, now, self._inbox.lease_seconds)
                self.documents[write.profile_id] = fenced_write(document, written, self._fence)
                status = "applied"
                for key in write.releases:
                    if self.claims.get(key) == write.profile_id:
                        del self.claims[key]
            statuses.append(status)
        return statuses

    def _claim(self, writes: Sequence[ProfileWrite]) -> list[bool]:
        """Take each write's unique keys (new ones first, then stale owners' ones); False for
        a write that lost one to another profile."""
        claims = [
            (index, key, stale_owner)
            for index, write in enumerate(writes)
            for key, stale_owner in write.claims.items()
        ]
        contested: list[tuple[int, str]] = []
        for index, key, stale_owner in claims:
            if stale_owner is None:
                if key in self.claims:
                    contested.append((index, key))
                else:
                    self.claims[key] = writes[index].profile_id
        for index, key, stale_owner in claims:
            if stale_owner is not None:
                if self.claims.get(key) == stale_owner:
                    self.claims[key] = writes[index].profile_id
                else:
                    contested.append((index, key))
        ok = [True] * len(writes)
        for index, key in contested:
            if self.claims.get(key) != writes[index].profile_id:
                ok[index] = False
        return ok


def _written(
    write: ProfileWrite,
    document: Document | None,
    marker: str,
    now: datetime,
    lease_seconds: float,
) -> Document:
    """The profile after the write (as `worker.store.profiles` builds its operation)."""
    changes = copy.deepcopy(write.changes)
    subscriptions = copy.deepcopy(write.subscriptions)
    if document is None:
        profile = Profile(
            profile_id=write.profile_id,
            db_id=write.db_id,
            account_id=write.account_id,
            fields={**changes.set, **changes.inc, **changes.add_tags},
            subscriptions=subscriptions,
        )
        return Document(profile, 1, {marker: marker_time(now)})
    current: Profile = document.state
    profile = replace(
        current,
        fields=_changed_fields(copy.deepcopy(current.fields), changes),
        subscriptions={**copy.deepcopy(current.subscriptions), **subscriptions},
    )
    markers = markers_after(document, write.before, marker, now, lease_seconds)
    return Document(profile, document.version + 1, markers)


def _changed_fields(fields: dict[str, Any], changes: FieldChanges) -> dict[str, Any]:
    """`$set`, `$inc`, `$unset`, `$addToSet` with `$each`, and `$pullAll` on `fields`."""
    fields.update(changes.set)
    for name, delta in changes.inc.items():
        fields[name] = fields.get(name, 0) + delta
    for name in changes.unset:
        fields.pop(name, None)
    for name, tags in changes.add_tags.items():
        present = list(fields.get(name) or [])
        fields[name] = present + [tag for tag in dict.fromkeys(tags) if tag not in present]
    for name, tags in changes.remove_tags.items():
        if name in fields:
            fields[name] = [tag for tag in fields[name] if tag not in tags]
    return fields


def _equal(stored: Any, value: Any) -> bool:
    """Equality as MongoDB compares values: a bool never equals a number."""
    if isinstance(stored, bool) != isinstance(value, bool):
        return False
    return bool(stored == value)


def _matches(stored: Any, value: Any) -> bool:
    """A field query's equality: the value itself, or an element of a stored array."""
    if _equal(stored, value):
        return True
    return isinstance(stored, list) and any(_equal(item, value) for item in stored)


def _contains_all(stored: Any, values: Any) -> bool:
    """`$all`: every value is the field or one of its elements; never for no values."""
    wanted = list(values) if isinstance(values, list | tuple) else [values]
    return bool(wanted) and all(_matches(stored, value) for value in wanted)
