"""The balance rule of `ownership.moves`, played out between simulated processes: whatever
joins and leaves, every partition ends held by one process and each holds within one of P/W."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.runtime.ownership import View, moves, preference_of


class Cluster:
    """Processes taking turns at the rule, each seeing the shared state as a poll would."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.held: dict[str, set[int]] = {}
        self.hungry: set[str] = set()

    def join(self, name: str) -> None:
        self.held[name] = set()

    def leave(self, name: str) -> None:
        del self.held[name]
        self.hungry.discard(name)

    def poll(self, name: str) -> None:
        owned = {p for held in self.held.values() for p in held}
        view = View(
            self.partitions,
            len(self.held),
            frozenset(self.held[name]),
            frozenset(set(range(self.partitions)) - owned),
            len(self.hungry - {name}),
        )
        planned = moves(view, preference_of(name, self.partitions))
        assert not (set(planned.take) & owned), "only free partitions are taken"
        self.held[name] -= set(planned.release)
        self.held[name] |= set(planned.take)
        (self.hungry.add if planned.hungry else self.hungry.discard)(name)

    def settled(self) -> bool:
        counts = [len(held) for held in self.held.values()]
        owned = [p for held in self.held.values() for p in held]
        floor, ceil = self.partitions // len(counts), -(-self.partitions // len(counts))
        return sorted(owned) == list(range(self.partitions)) and all(
            floor <= count <= ceil for count in counts
        )


def settle(cluster: Cluster, chance: random.Random, rounds: int = 40) -> int:
    """Polls in a random order until settled; how many rounds it took."""
    for round_number in range(1, rounds + 1):
        names = list(cluster.held)
        chance.shuffle(names)
        for name in names:
            cluster.poll(name)
        if cluster.settled():
            return round_number
    raise AssertionError(f"not settled after {rounds} rounds: {cluster.held}")


@settings(max_examples=300, deadline=None)
@given(
    partitions=st.integers(1, 16),
    changes=st.lists(st.tuples(st.booleans(), st.integers(0, 9)), min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_any_joins_and_leaves_settle_evenly(
    partitions: int, changes: list[tuple[bool, int]], seed: int
) -> None:
    chance = random.Random(seed)
    cluster = Cluster(partitions)
    cluster.join("p0")
    settle(cluster, chance)
    for joining, which in changes:
        name = f"p{which}"
        if joining and name not in cluster.held:
            cluster.join(name)
        elif not joining and name in cluster.held and len(cluster.held) > 1:
            cluster.leave(name)
        settle(cluster, chance)


def test_more_processes_than_fit_the_ceiling_leave_none_starving() -> None:
    """P = 8, W = 6: the ceiling (2) alone would let four processes hold two each and leave
    two with none; the hungry signal makes two of them give one up."""
    cluster = Cluster(8)
    chance = random.Random(1)
    cluster.join("p0")
    settle(cluster, chance)
    for n in range(1, 6):
        cluster.join(f"p{n}")
        settle(cluster, chance)
    assert sorted(len(held) for held in cluster.held.values()) == [1, 1, 1, 1, 2, 2]


def test_a_process_over_its_ceiling_releases_the_extras_and_takes_nothing() -> None:
    view = View(8, 3, frozenset(range(8)), frozenset(), 0)
    planned = moves(view, list(range(8)))
    assert planned.release == (3, 4, 5, 6, 7)
    assert planned.take == ()


def test_a_process_within_its_share_stays_put_unless_another_starves() -> None:
    quiet = View(8, 3, frozenset({0, 1, 2}), frozenset(), 0)
    assert moves(quiet, list(range(8))).release == ()
    starving = View(8, 3, frozenset({0, 1, 2}), frozenset(), 1)
    assert moves(starving, list(range(8))).release == (2,)


def test_only_a_hungry_process_takes_while_one_starves() -> None:
    fed = View(8, 3, frozenset({0, 1}), frozenset({7}), 1)
    assert moves(fed, list(range(8))).take == ()
    hungry = View(8, 3, frozenset({0}), frozenset({7}), 1)
    planned = moves(hungry, list(range(8)))
    assert planned.take == (7,)
    assert not planned.hungry, "with it, the process holds its floor"
