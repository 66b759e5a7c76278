"""Reading a backfill file: CSV rows to flat-form fields, JSON lines as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.backfill.kinds import kind_of
from worker.backfill.source import Format, Line, Shaping, SourceError, format_of, read_lines
from worker.settings import Settings


def lines_of(path: Path, text: str, shaping: Shaping | None = None) -> list[Line]:
    path.write_text(text, encoding="utf-8")
    return list(read_lines(path, format_of(path), shaping or Shaping()))


def test_csv_columns_become_flat_fields_through_the_mapping(tmp_path: Path) -> None:
    shaping = Shaping(
        defaults={"account_id": 1, "db_id": 10},
        mapping={"Email": "email", "First name": "_fname", "internal": ""},
        token="secret-token-0123456789",
    )
    text = (
        "Email,First name,age,internal,db_id,update_only\n"
        "ada@example.com,Ada,36,x,11,true\n"
        "grace@example.com,,,y,,\n"
    )
    first, second = lines_of(tmp_path / "rows.csv", text, shaping)
    assert first == Line(
        2,
        {
            "email": "ada@example.com",
            "_fname": "Ada",
            "age": "36",
            "db_id": 11,
            "update_only": True,
            "account_id": 1,
            "token": "secret-token-0123456789",
        },
    ), "a row's own db_id wins; parameters are typed, fields stay text for the worker"
    assert second.body == {
        "email": "grace@example.com",
        "account_id": 1,
        "db_id": 10,
        "token": "secret-token-0123456789",
    }, "empty cells are left out"


def test_csv_lines_are_numbered_as_in_an_editor(tmp_path: Path) -> None:
    text = 'email,note\na@example.com,"two\nlines"\n\nb@example.com,x,extra\nc@example.com,y\n'
    lines = lines_of(tmp_path / "rows.csv", text)
    assert [line.number for line in lines] == [2, 5, 6]
    assert lines[0].body == {"email": "a@example.com", "note": "two\nlines"}
    assert lines[1].body is None
    assert lines[1].problem == "the row has 3 cells, the header 2"


@pytest.mark.parametrize(
    ("header", "mapping", "problem"),
    [
        ("", {}, "no header row"),
        ("email,Mail", {"Mail": "email"}, "gives field 'email' more than one column"),
        ("email", {"Mail": "email"}, "--map names column 'Mail', which the CSV header lacks"),
    ],
)
def test_unusable_csv_headers_are_refused(
    tmp_path: Path, header: str, mapping: dict[str, str], problem: str
) -> None:
    with pytest.raises(SourceError, match=problem):
        lines_of(tmp_path / "rows.csv", header + "\n", Shaping(mapping=mapping))


def test_json_lines_keep_their_own_keys_and_report_what_is_not_a_command(tmp_path: Path) -> None:
    text = (
        '{"email": "a@example.com", "db_id": 11}\n'
        "\n"
        "{not json\n"
        "[1, 2]\n"
        '{"_message_id": "mine-1", "email": "b@example.com"}\n'
    )
    shaping = Shaping(defaults={"db_id": 10}, token="t" * 20)
    lines = lines_of(tmp_path / "commands.jsonl", text, shaping)
    assert [line.number for line in lines] == [1, 3, 4, 5]
    assert lines[0].body == {"email": "a@example.com", "db_id": 11, "token": "t" * 20}
    assert (lines[1].problem or "").startswith("not JSON: ")
    assert lines[2].problem == "not a JSON object"
    assert lines[3].message_id == "mine-1"
    assert lines[3].body == {"email": "b@example.com", "db_id": 10, "token": "t" * 20}


def test_the_format_comes_from_the_suffix() -> None:
    assert format_of(Path("a.CSV")) is Format.csv
    assert format_of(Path("a.ndjson")) is Format.jsonl
    with pytest.raises(ValueError, match="give --format"):
        format_of(Path("a.txt"))


def test_a_dry_run_checks_the_contract_of_the_queue() -> None:
    settings = Settings()
    imports = kind_of(settings.import_queue, settings)
    flat = {"account_id": 1, "db_id": 10, "email": "a@example.com", "city": "Oslo"}
    assert imports.problem(flat, 10_000) is None
    assert imports.problem({**flat, "matching": "loyalty_id"}, 10_000) is None
    assert imports.problem({**flat, "db_id": "ten"}, 10_000) == (
        "invalid parameter 'db_id': Input should be a valid integer"
    )
    assert imports.problem(flat, 20) == "message is 65 bytes, over the limit of 20"
    relations = kind_of(settings.relations_queue, settings)
    assert relations.problem({"action": "detach", "account_id": 1}, 10_000) == (
        "missing parameter 'rel_id' (or 'relation_id')"
    )
    with pytest.raises(ValueError, match="is not a command queue"):
        kind_of(settings.relations_query_queue, settings)
