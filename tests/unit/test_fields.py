from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain.imports.fields import plan_changes
from worker.domain.shared.catalog import Database, FieldSpec
from worker.errors import InvalidCommand

DATABASE = Database(
    db_id=1,
    account_id=1,
    name="people",
    fields=(
        FieldSpec(name="age", type="int"),
        FieldSpec(name="score", type="float"),
        FieldSpec(name="vip", type="bool"),
        FieldSpec(name="since", type="date"),
        FieldSpec(name="tags", type="tags"),
        FieldSpec(name="tier", type="enum", values=("a", "b")),
        FieldSpec(name="ip", type="ip"),
        FieldSpec(name="extra", type="object"),
        FieldSpec(name="phone", type="phone"),
    ),
)
SCHEMA = DATABASE.field_specs


@pytest.mark.parametrize(
    ("field", "raw", "stored"),
    [
        ("age", "42", 42),
        ("age", 42.0, 42),
        ("score", "1.5", 1.5),
        ("vip", "true", True),
        ("vip", 0, False),
        ("since", "2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
        ("since", "2024-02-29T10:00:00+02:00", datetime(2024, 2, 29, 8, tzinfo=UTC)),
        ("tags", "a, b, a", ["a", "b"]),
        ("tier", "b", "b"),
        ("ip", " 10.0.0.1 ", "10.0.0.1"),
        ("phones", ["+1 (555) 010-9999"], ["+15550109999"]),
        ("_fname", 7, "7"),
    ],
)
def test_form_values_convert_losslessly(field: str, raw: Any, stored: Any) -> None:
    assert plan_changes(SCHEMA, {field: raw}).set == {field: stored}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"age": "4.5"}, "age"),
        ({"age": True}, "age"),
        ({"score": "nan"}, "score"),
        ({"vip": "maybe"}, "vip"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-01-01T10:00:00"}, "since"),
        ({"tier": "c"}, "tier"),
        ({"ip": "300.1.1.1"}, "ip"),
        ({"nope": 1}, "nope"),
        ({"extra": {"$where": 1}}, "$where"),
        ({"extra": {"a": {"b.c": 1}}}, "b.c"),
        ({"extra": {"a": [[1]]}}, "extra"),
        ({"age": {"action": "add", "value": 1}}, "age"),
        ({"tags": {"action": "incr", "value": 1}}, "tags"),
        ({"email": {"action": "unset"}}, "email"),
        ({"age": {"action": "explode"}}, "age"),
        ({"age": None}, "age"),
        ({"age": 2**64}, "age"),
        ({"extra": {"big": 2**64}}, "extra"),
    ],
)
def test_bad_values_are_refused_naming_the_field(data: dict[str, Any], names: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        plan_changes(SCHEMA, data)
    assert names in refused.value.text


def test_functional_updates_sort_into_their_buckets() -> None:
    changes = plan_changes(
        SCHEMA,
        {
            "age": {"action": "incr", "value": "-2"},
            "tags": {"action": "add", "value": "x, y"},
            "tier": {"action": "unset"},
            "score": {"action": "set", "value": 2},
        },
    )
    assert changes.inc == {"age": -2}
    assert changes.add_tags == {"tags": ["x", "y"]}
    assert changes.unset == ["tier"]
    assert changes.set == {"score": 2.0}
    assert changes.names() == ["age", "score", "tags", "tier"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*SCHEMA, "junk", "$x", "a.b"]), json_values, max_size=6))
def test_any_data_is_either_planned_or_refused_with_400(data: dict[str, Any]) -> None:
    try:
        plan_changes(SCHEMA, data)
    except InvalidCommand as refused:
        assert refused.code == 400
        assert refused.text
