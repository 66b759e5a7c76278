from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contract.common import MAX_NESTING, parse_json_object
from worker.contract.imports import decode_import
from worker.errors import InvalidCommand


def test_canonical_form() -> None:
    command = decode_import({"account_id": 1, "db_id": 2, "email": "a@b.co", "data": {"x": 1}})
    assert command.matching == "email"
    assert command.data == {"x": 1}


def test_flat_form_moves_fields_into_data_and_matching_may_name_a_field() -> None:
    command = decode_import(
        {"account_id": 1, "db_id": 2, "matching": "loyalty_id", "loyalty_id": "L-7", "city": "Oslo"}
    )
    assert command.data == {"loyalty_id": "L-7", "city": "Oslo"}
    assert (command.matching, command.field_name, command.field_value) == (
        "custom",
        "loyalty_id",
        "L-7",
    )


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        ({"account_id": 1, "db_id": 2}, "data"),
        ({"account_id": "1", "db_id": 2, "data": {}}, "account_id"),
        ({"account_id": 1, "db_id": 2, "data": {}, "surprise": 1}, "surprise"),
        ({"db_id": 2, "data": {}}, "account_id"),
        ({"account_id": 1, "db_id": 2, "data": [], "email": "a@b.co"}, "data"),
        ({"account_id": 1, "db_id": 2, "data": {}, "matching": "vibes"}, "matching"),
    ],
)
def test_malformed_commands_name_the_parameter(raw: dict[str, Any], mentions: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        decode_import(raw)
    assert mentions in refused.value.text


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"1", b'"x"', b"\xff"])
def test_bodies_that_are_not_json_objects(body: bytes) -> None:
    with pytest.raises(InvalidCommand):
        parse_json_object(body, 1_000)


def test_oversize_bodies_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidCommand, match="limit"):
        parse_json_object(b"{" + b" " * 2_000 + b"}", 1_000)


INT64 = st.integers(-(2**63), 2**63 - 1)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "account_id",
                "db_id",
                "data",
                "email",
                "matching",
                "update_only",
                "token",
                "x",
                "profile_id",
            ]
        ),
        st.none()
        | st.booleans()
        | INT64
        | st.text(max_size=10)
        | st.dictionaries(st.text(max_size=5), INT64, max_size=2),
    )
)
def test_random_commands_decode_or_are_refused(raw: dict[str, Any]) -> None:
    try:
        decode_import(orjson.loads(orjson.dumps(raw)))
    except InvalidCommand as refused:
        assert refused.code == 400


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def test_bodies_nested_deeper_than_the_limit_are_refused() -> None:
    assert parse_json_object(nested(MAX_NESTING), 1 << 20)["a"]
    with pytest.raises(InvalidCommand, match=f"nested deeper than {MAX_NESTING} levels"):
        parse_json_object(nested(MAX_NESTING + 1), 1 << 20)


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'{"n": 18446744073709551616}', True),
        (b'{"n": [1, -99999999999999999999]}', True),
        (b'{"n": 9223372036854775807}', False),
        (b'{"n": 1.8446744073709552e19}', False),
        (b'{"phone": "123456789012345678901234"}', False),
    ],
)
def test_integer_literals_beyond_64_bits_are_refused(body: bytes, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidCommand, match="64-bit range"):
            parse_json_object(body, 1 << 20)
    else:
        assert parse_json_object(body, 1 << 20)
