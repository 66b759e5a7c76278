"""Profile ids, their xxh64 hashes, and the normal forms used to compare emails and phones."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

import xxhash

from worker.errors import InvalidCommand

_PROFILE_ID = re.compile(r"^[0-9a-f]{24}$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
"""No whitespace and no control characters (NUL included) anywhere in an address."""
_PHONE_JUNK = re.compile(r"[^0-9]")


def profile_xxh(profile_id: str) -> str:
    """XXH64 (seed 0) of the 24-char id's ASCII bytes, as 16 lower-case hex digits."""
    return xxhash.xxh64_hexdigest(profile_id.encode("ascii"))


def short_hash(text: str) -> str:
    """XXH64 of any text as 16 hex digits: a compact name, safe as a MongoDB field name."""
    return xxhash.xxh64_hexdigest(text.encode())


class _ProfileIds:
    """Ids of the form of a MongoDB ObjectId, made as the driver makes them: 4 bytes of epoch
    seconds (big-endian), 5 random bytes drawn once per process (again in a forked child),
    and a 3-byte counter from a random start, all as 24 lower-case hex digits."""

    _COUNTER_LIMIT = 1 << 24

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._random = secrets.token_bytes(5)
        self._counter = secrets.randbelow(self._COUNTER_LIMIT)

    def next(self) -> str:
        with self._lock:
            if (pid := os.getpid()) != self._pid:
                self._pid, self._random = pid, secrets.token_bytes(5)
            counter = self._counter
            self._counter = (counter + 1) % self._COUNTER_LIMIT
            random = self._random
        seconds = int(time.time()).to_bytes(4, "big")
        return (seconds + random + counter.to_bytes(3, "big")).hex()


_profile_ids = _ProfileIds()


def new_profile_id() -> str:
    """A fresh profile id: a MongoDB ObjectId in its 24-char hex form (the store keys
    profiles by it), made without the driver."""
    return _profile_ids.next()


def check_profile_id(value: str, field: str = "profile_id") -> str:
    """The id itself if it is 24 lower-case hex digits, else a 400 naming the field."""
    if not _PROFILE_ID.match(value):
        raise InvalidCommand(f"invalid parameter '{field}': expected 24 lower-case hex digits")
    return value


def normalize_email(value: str, field: str = "email") -> str:
    """Trimmed and lower-cased: emails compare case-insensitively (SPEC §4.2)."""
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidCommand(f"invalid value of '{field}': not an email address")
    return email


def normalize_phone(value: str, field: str = "phone") -> str:
    """`+` and digits only: phones compare in that form (SPEC §4.2)."""
    digits = _PHONE_JUNK.sub("", value)
    if not 5 <= len(digits) <= 15:
        raise InvalidCommand(f"invalid value of '{field}': a phone has 5 to 15 digits")
    return "+" + digits
