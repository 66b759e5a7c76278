"""The pure rules of relation commands (SPEC §5) and of query cursors (SPEC §6)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.contract.relations import decode_relation
from worker.domain.queries.processor import cursor_position
from worker.domain.relations.rules import after, checked_weights, refuse_if_inapplicable
from worker.domain.shared.catalog import RelationProperty, RelationType
from worker.domain.shared.relations import Relation
from worker.errors import Ambiguous, InvalidCommand, NotFound

TYPE = RelationType(
    rel_id=7,
    account_id=1,
    name="t",
    db_a=1,
    db_b=2,
    properties=(
        RelationProperty(name="weight", type="number"),
        RelationProperty(name="active", type="bool"),
    ),
)
CURRENT = Relation(
    relation_id=3,
    rel_id=7,
    account_id=1,
    db_a=1,
    db_b=2,
    profile_id_a="a" * 24,
    profile_id_b="b" * 24,
    props={"weight": 5, "active": True},
    relation_to_a="Father",
    priority=40,
)


def command(action: str, **extra: Any) -> Any:
    return decode_relation(
        {
            "action": action,
            "account_id": 1,
            "rel_id": 7,
            "profile_a": {"profile_id": "a" * 24},
            "profile_b": {"profile_id": "b" * 24},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("action", "weights", "expected"),
    [
        ("strengthen", {"weight": 2}, {"weight": 7, "active": True}),
        ("strengthen", {"weight": -7.5}, {"weight": -2.5, "active": True}),
        ("strengthen", {"active": False}, {"weight": 5, "active": False}),
        ("edit", {"weight": 1}, {"weight": 1, "active": True}),
        ("attach", {"weight": 9}, {"weight": 9, "active": True}),
    ],
)
def test_values_after_each_action(
    action: str, weights: dict[str, Any], expected: dict[str, Any]
) -> None:
    cmd = command(action, weights=weights)
    assert after(cmd, checked_weights(TYPE, cmd.weights), CURRENT).props == expected


def test_strengthen_counts_a_missing_value_as_zero_and_labels_stay_unless_given() -> None:
    blank = Relation(3, 7, 1, 1, 2, "a" * 24, "b" * 24)
    cmd = command("strengthen", weights={"weight": 4}, relation_to_b="Son")
    changed = after(cmd, checked_weights(TYPE, cmd.weights), blank)
    assert changed.props == {"weight": 4}
    assert (changed.relation_to_a, changed.relation_to_b, changed.priority) == (None, "Son", 50)
    kept = after(command("edit", priority=0), {}, CURRENT)
    assert (kept.relation_to_a, kept.priority) == ("Father", 0)


def test_strengthen_beyond_64_bits_is_refused() -> None:
    big = Relation(3, 7, 1, 1, 2, "a" * 24, "b" * 24, props={"weight": 2**63 - 1})
    cmd = command("strengthen", weights={"weight": 1})
    with pytest.raises(InvalidCommand, match="64-bit"):
        after(cmd, checked_weights(TYPE, cmd.weights), big)


@pytest.mark.parametrize(
    ("weights", "text"),
    [
        ({"colour": 1}, "not declared"),
        ({"active": 1}, "must be a bool"),
        ({"weight": True}, "must be a number"),
    ],
)
def test_weights_must_be_declared_with_their_type(weights: dict[str, Any], text: str) -> None:
    with pytest.raises(InvalidCommand, match=text):
        checked_weights(TYPE, weights)


def test_attach_of_an_existing_and_detach_of_a_missing_relation_are_refused() -> None:
    with pytest.raises(Ambiguous):
        refuse_if_inapplicable(command("attach", weights={}), CURRENT)
    with pytest.raises(NotFound):
        refuse_if_inapplicable(command("detach"), None)
    refuse_if_inapplicable(command("strengthen", weights={}), None)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"action": "detach", "account_id": 1, "relation_id": 1, "priority": 3}, "not allowed"),
        ({"action": "edit", "account_id": 1, "rel_id": 7}, "missing parameter 'profile_a'"),
        ({"action": "attach", "account_id": 1, "relation_id": 1, "weights": {}}, "relation_id"),
    ],
)
def test_contract_refusals_name_the_parameter(body: dict[str, Any], text: str) -> None:
    with pytest.raises(InvalidCommand, match=text):
        decode_relation(body)


def test_cursors_round_trip_and_reject_garbage() -> None:
    assert cursor_position(None, by_priority=True) is None
    assert cursor_position("40:17", by_priority=True) == (40, 17)
    assert cursor_position("17", by_priority=False) == (0, 17)
    for bad, by_priority in (("17", True), ("a:b", True), ("1:2", False), ("", False)):
        with pytest.raises(InvalidCommand):
            cursor_position(bad, by_priority)
