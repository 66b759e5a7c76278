"""Which applied-command markers a write drops: never the newest 16, never one younger than
three leases (a dead owner's command is taken over after one), and never more than 1 024 kept."""

from __future__ import annotations

from worker.store.markers import MARKERS_HELD_AT_MOST, Stamp, marker_keep_ms

LEASE_MS = 60_000
KEEP_MS = marker_keep_ms(LEASE_MS / 1000)


def test_markers_of_the_last_three_leases_are_kept_however_many() -> None:
    now = 10 * KEEP_MS
    young = {f"m{n}": now - n for n in range(40)}  # 40 writes within a second
    assert Stamp(markers=young).pruned(now, KEEP_MS) == ()


def test_beyond_the_newest_sixteen_old_markers_go() -> None:
    now = 10 * KEEP_MS
    old = {f"old{n}": now - KEEP_MS - 1 - n for n in range(20)}
    dropped = set(Stamp(markers=old).pruned(now, KEEP_MS))
    assert dropped == {f"old{n}" for n in range(15, 20)}, "the newest 15 stay, with the new one"


def test_a_document_never_holds_more_than_the_bound() -> None:
    now = 10 * KEEP_MS
    many = {f"m{n}": now - n for n in range(MARKERS_HELD_AT_MOST + 10)}
    dropped = Stamp(markers=many).pruned(now, KEEP_MS)
    assert len(many) - len(dropped) + 1 == MARKERS_HELD_AT_MOST
    assert set(dropped) == {f"m{n}" for n in range(MARKERS_HELD_AT_MOST - 1, len(many))}
