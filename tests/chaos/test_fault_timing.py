"""The timing of a chaos run's faults: where node faults fall in the stream, and the pause a
fault is charged with (pure: no services)."""

from __future__ import annotations

from tests.chaos.faults import FaultPlan
from tests.chaos.run import longest_pauses


def test_node_faults_leave_the_rest_of_a_plan_as_it_was_and_fall_in_bands_of_their_own() -> None:
    without = FaultPlan.drawn(7, kills=2, broker=1, database=1, joins=1, leaves=1)
    with_nodes = FaultPlan.drawn(7, kills=2, broker=1, database=1, joins=1, leaves=1, nodes=3)

    assert [f for f in with_nodes.in_order() if f[1] != "node"] == without.in_order()
    points = with_nodes.nodes
    assert len(points) == 3
    assert list(points) == sorted(points)
    width = 0.7 / 3
    for band, point in enumerate(points):
        assert 0.05 + band * width <= point < 0.05 + (band + 0.25) * width


def test_a_pause_is_the_longest_gap_between_answers_that_overlaps_the_fault() -> None:
    arrivals = [1.0, 2.0, 3.0, 9.0, 9.5, 20.0]
    windows = [("cut", 2.5, 8.0), ("late", 9.6, 10.0), ("after the end", 25.0, 26.0)]

    pauses = longest_pauses(windows, arrivals, end=30.0)

    assert pauses == [("cut", 6.0), ("late", 10.5), ("after the end", 10.0)]
