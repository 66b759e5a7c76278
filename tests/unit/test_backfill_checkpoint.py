"""The checkpoint: written whole or not at all, and refused for another backfill."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.backfill import checkpoint as checkpoints
from worker.backfill.checkpoint import Checkpoint, CheckpointRefused
from worker.backfill.report import Outcome, read_errors, write_errors


def test_a_checkpoint_comes_back_as_it_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.checkpoint"
    saved = Checkpoint("id1", "digest1", "database_import", 7, 1).sized(10)
    saved.answered[3] = saved.answered[5] = 1
    saved.refusals[5] = (404, "database 99 not found in account 1")
    checkpoints.save(path, saved)
    assert checkpoints.load(path) == saved
    assert checkpoints.resumed(path, "id1", "digest1", "database_import") == saved


def test_a_save_that_fails_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl.checkpoint"
    checkpoints.save(path, Checkpoint("id1", "digest1", "q", confirmed_through=100))

    def crash(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        checkpoints.save(path, Checkpoint("id1", "digest1", "q", confirmed_through=200))
    monkeypatch.undo()
    loaded = checkpoints.load(path)
    assert loaded is not None
    assert loaded.confirmed_through == 100


def test_no_checkpoint_means_from_the_first_line(tmp_path: Path) -> None:
    fresh = checkpoints.resumed(tmp_path / "none", "id1", "digest1", "q")
    assert (fresh.confirmed_through, fresh.ask_from) == (0, None)


@pytest.mark.parametrize(
    ("digest", "reason"),
    [("digest2", "the file's content changed since"), ("digest1", "the options")],
)
def test_a_checkpoint_of_another_backfill_is_refused(
    tmp_path: Path, digest: str, reason: str
) -> None:
    path = tmp_path / "a.jsonl.checkpoint"
    checkpoints.save(path, Checkpoint("id1", "digest1", "q", confirmed_through=100))
    with pytest.raises(CheckpointRefused, match=f"belongs to another backfill: {reason}"):
        checkpoints.resumed(path, "id2", digest, "q")


def test_an_unreadable_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.checkpoint"
    path.write_text('{"version": 1}')
    with pytest.raises(CheckpointRefused, match="is unreadable"):
        checkpoints.load(path)


def test_one_backfill_of_a_file_at_a_time(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text("{}\n")
    with (
        checkpoints.exclusive(file),
        pytest.raises(CheckpointRefused, match="is running"),
        checkpoints.exclusive(file),
    ):
        pass
    with checkpoints.exclusive(file):
        pass


def test_the_errors_report_has_one_line_per_refused_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.errors"
    refusals = {12: (400, "not sent: not\tJSON\nat all"), 3: (404, "database 99 not found")}
    write_errors(path, refusals)
    assert path.read_text() == "3\t404\tdatabase 99 not found\n12\t400\tnot sent: not JSON at all\n"
    assert read_errors(path)[12] == (400, "not sent: not JSON at all")


def test_the_summary_counts_lines_per_code() -> None:
    outcome = Outcome(lines=5, refusals={4: (404, "b"), 2: (404, "a"), 3: (400, "c")}, applied=2)
    assert outcome.by_code() == [(0, 2, ""), (400, 1, "line 3: c"), (404, 2, "line 2: a")]
