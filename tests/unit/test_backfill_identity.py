"""Message ids of a backfill: the same line of the same backfill, the same id, always."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.backfill.identity import content_of, identity_of, line_of, message_id
from worker.backfill.source import Shaping

OPTIONS = {"queue": "database_import", "format": "jsonl", **Shaping().fingerprint()}


def identity(path: Path, text: str, **changes: object) -> str:
    path.write_text(text)
    return identity_of(content_of(path), {**OPTIONS, **changes}, None)


def test_the_identity_follows_the_content_not_the_name(tmp_path: Path) -> None:
    first = identity(tmp_path / "a.jsonl", '{"email": "a@example.com"}\n')
    assert identity(tmp_path / "copy.jsonl", '{"email": "a@example.com"}\n') == first
    assert identity(tmp_path / "a.jsonl", '{"email": "a@example.com"}\n') == first
    assert identity(tmp_path / "a.jsonl", '{"email": "b@example.com"}\n') != first


def test_options_that_change_the_commands_change_the_identity(tmp_path: Path) -> None:
    text = '{"email": "a@example.com"}\n'
    first = identity(tmp_path / "a.jsonl", text)
    other_db = Shaping(defaults={"db_id": 11}).fingerprint()
    assert identity(tmp_path / "a.jsonl", text, **other_db) != first
    assert identity(tmp_path / "a.jsonl", text, queue="relations") != first
    rotated = Shaping(token="another-token-0123456789").fingerprint()
    assert identity(tmp_path / "a.jsonl", text, **rotated) == first, "the token is no part"


def test_ids_are_distinct_per_line_and_name_their_line() -> None:
    ids = {message_id("abc", line) for line in range(1, 10_001)}
    assert len(ids) == 10_000
    assert line_of(message_id("abc", 42), "abc") == 42
    assert line_of(message_id("abd", 42), "abc") is None, "another backfill's answer"
    assert line_of("backfill:abc:x", "abc") is None
    assert line_of(None, "abc") is None


def test_a_run_id_replaces_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("{}\n")
    assert identity_of(content_of(path), OPTIONS, "crm-2026-11") == "crm-2026-11"
    with pytest.raises(ValueError, match="a run id has"):
        identity_of(content_of(path), OPTIONS, "no:colons")


@pytest.mark.parametrize(("text", "lines"), [("", 0), ("a\nb\n", 2), ("a\nb", 2), ("\n\n", 2)])
def test_the_content_counts_physical_lines(tmp_path: Path, text: str, lines: int) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(text)
    assert content_of(path).lines == lines
