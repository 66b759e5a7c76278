"""Partitions of commands (`worker.domain.order`): one per order key, spread evenly, and the
same for every copy and every spelling of the key the matching mode normalizes."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st

from worker.domain.order import partition_of, routing_key


def _import(email: str, **extra: object) -> bytes:
    return orjson.dumps({"account_id": 1, "db_id": 10, "email": email, **extra})


def test_keys_spread_evenly_over_the_partitions() -> None:
    counts = Counter(partition_of("imports", _import(f"p{n}@example.com"), 8) for n in range(8_000))

    assert sorted(counts) == list(range(8))
    assert all(850 <= count <= 1_150 for count in counts.values()), counts


def test_one_key_is_one_partition_whatever_else_the_command_carries() -> None:
    first = partition_of("imports", _import("Ada@Example.com", data={"age": 1}), 16)
    second = partition_of("imports", _import("ada@example.com", data={"city": "Oslo"}), 16)

    assert first == second, "the email's normal form is the key"
    assert routing_key("imports", _import("ADA@example.com", data={}), 16) == str(second)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_any_body_has_a_partition_in_range(body: bytes, partitions: int) -> None:
    """A body that is not a command is placed by its own bytes (its partition refuses it)."""
    assert 0 <= partition_of("imports", body, partitions) < partitions
    assert partition_of("relations", body, partitions) == partition_of(
        "relations", body, partitions
    )
