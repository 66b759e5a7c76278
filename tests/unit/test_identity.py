from __future__ import annotations

import pytest

from worker.domain.shared.identity import (
    check_profile_id,
    normalize_email,
    normalize_phone,
    profile_xxh,
)
from worker.errors import InvalidCommand


@pytest.mark.parametrize(
    ("profile_id", "xxh"),
    [
        ("669e6968ebf4ac52b623a997", "5af1023c84f66195"),
        ("6751b8f1c5e3db9bcb75befa", "879cebbb0e6b6723"),
        ("5c910f6bc484d023b1309bee", "54ec2d76ac22a964"),
    ],
)
def test_profile_hash_matches_the_documented_examples(profile_id: str, xxh: str) -> None:
    assert profile_xxh(profile_id) == xxh


def test_emails_compare_trimmed_and_case_insensitive() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize("bad", ["", "ada", "ada@", "@example.com", "a b@example.com"])
def test_bad_emails_are_refused(bad: str) -> None:
    with pytest.raises(InvalidCommand, match="email"):
        normalize_email(bad)


def test_phones_compare_as_plus_and_digits() -> None:
    assert normalize_phone("+7 (912) 345-67-89") == "+79123456789"


def test_profile_ids_are_24_lower_hex() -> None:
    assert check_profile_id("669e6968ebf4ac52b623a997") == "669e6968ebf4ac52b623a997"
    with pytest.raises(InvalidCommand, match="profile_id"):
        check_profile_id("669E6968EBF4AC52B623A997")
