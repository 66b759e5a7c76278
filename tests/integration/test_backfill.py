"""`profile-worker backfill` as an operator runs it: a real process, the real broker and
database, a worker answering. Each run is checked by its exit code, its one failure line, the
errors report and what the database holds afterwards."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.integration.conftest import TOKEN, StartWorker, seed_profile, worker_environment
from worker.backfill import checkpoint as checkpoints
from worker.backfill.checkpoint import Checkpoint
from worker.backfill.report import read_errors
from worker.cli.failures import ExitCode
from worker.runtime.topology import declare
from worker.settings import Settings


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def failure_line(self) -> str:
        """The one line a failed command ends with, checked to be alone of its kind."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.startswith("profile-worker:")]
        assert len(lines) == 1, self.stderr
        return lines[0]


async def started(env: dict[str, str], *args: str, **streams: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "backfill", *args, env=env, **streams
    )


async def backfill(env: dict[str, str], *args: str, timeout: float = 180) -> Ran:
    pipe = asyncio.subprocess.PIPE
    process = await started(env, *args, stdout=pipe, stderr=pipe)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


def write_lines(path: Path, bodies: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(body) + b"\n" for body in bodies))
    return path


def counted(email: str) -> dict[str, Any]:
    """A flat-form import that adds 1 to the profile's score: applied twice, it shows."""
    return {"email": email, "_fname": "B", "score": {"action": "incr", "value": 1}}


async def scores(mongo: Any) -> dict[str, float]:
    profiles = await mongo.profiles.find({}).to_list()
    return {doc["fields"]["email"]: doc["fields"].get("score") for doc in profiles}


async def until_checkpoint(path: Path, condition: Callable[[Checkpoint], bool]) -> Checkpoint:
    deadline = time.monotonic() + 30
    while True:
        checkpoint = checkpoints.load(path)
        if checkpoint is not None and condition(checkpoint):
            return checkpoint
        assert time.monotonic() < deadline, "the checkpoint did not move"
        await asyncio.sleep(0.02)


async def queued(broker: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await broker.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {**worker_environment(settings), "PW_BACKFILL_TOKEN": TOKEN}


IMPORT_OPTIONS = ("--account-id", "1", "--db-id", "10")


@pytest.mark.usefixtures("worker")
async def test_jsonl_is_applied_once_however_often_it_runs(
    env: dict[str, str], settings: Settings, mongo: Any, tmp_path: Path
) -> None:
    bodies = [counted(f"j{n}@example.com") for n in range(40)]
    bodies.append(counted("j0@example.com"))  # another line: another command
    bodies.append({"email": "canon@example.com", "data": {"score": 5}})  # the `data` form
    file = write_lines(tmp_path / "profiles.jsonl", bodies)
    expected = {f"j{n}@example.com": 1 for n in range(1, 40)}
    expected |= {"j0@example.com": 2, "canon@example.com": 5}
    done = f"backfill done: 42 lines published to {settings.import_queue}, 42 answered"

    first = await backfill(env, str(file), *IMPORT_OPTIONS, "--wait-results")
    assert (first.code, first.stderr) == (0, "")
    assert done in first.stdout
    assert await scores(mongo) == expected
    assert (tmp_path / "profiles.jsonl.errors").read_text() == ""

    again = await backfill(env, str(file), *IMPORT_OPTIONS, "--wait-results")
    assert (again.code, again.stderr) == (0, "")
    assert done in again.stdout, "every line answered again, from the inbox"
    assert await scores(mongo) == expected, "and nothing applied twice"


@pytest.mark.usefixtures("worker")
async def test_csv_rows_become_flat_imports(
    env: dict[str, str], mongo: Any, tmp_path: Path
) -> None:
    file = tmp_path / "crm.csv"
    file.write_text(
        "Email,First name,city,age,tier,internal\n"
        "ada@example.com,Ada,London,36,gold,x\n"
        "grace@example.com,Grace,,85,silver,y\n"
    )
    mapping = ("--map", "Email=email", "--map", "First name=_fname", "--map", "internal=")
    ran = await backfill(env, str(file), *IMPORT_OPTIONS, *mapping, "--wait-results")
    assert (ran.code, ran.stderr) == (0, "")
    profiles = {
        doc["fields"]["email"]: doc["fields"] for doc in await mongo.profiles.find().to_list()
    }
    assert profiles["ada@example.com"] == {
        "email": "ada@example.com",
        "_fname": "Ada",
        "city": "London",
        "age": 36,
        "tier": "gold",
    }
    assert "city" not in profiles["grace@example.com"], "an empty cell sets nothing"
    assert profiles["grace@example.com"]["age"] == 85


@pytest.mark.usefixtures("worker")
async def test_refused_lines_are_reported_with_their_code(
    env: dict[str, str], mongo: Any, tmp_path: Path
) -> None:
    file = write_lines(
        tmp_path / "mixed.jsonl",
        [
            counted("ok@example.com"),
            counted("not-an-email"),
            {**counted("x@example.com"), "db_id": 99},
        ],
    )
    with file.open("a") as stream:
        stream.write("{not json\n")
    ran = await backfill(env, str(file), *IMPORT_OPTIONS, "--wait-results")
    assert ran.code == ExitCode.INCOMPLETE
    assert ran.failure_line() == f"profile-worker: 3 of 4 lines refused (see {file}.errors)"
    report = read_errors(Path(f"{file}.errors"))
    assert report.keys() == {2, 3, 4}
    assert report[2] == (400, "invalid value of 'email': not an email address")
    assert report[3] == (404, "database 99 not found in account 1")
    assert report[4][0] == 400
    assert report[4][1].startswith("not sent: not JSON: ")
    assert await scores(mongo) == {"ok@example.com": 1}


async def test_a_dry_run_checks_every_line_and_sends_none(
    env: dict[str, str], settings: Settings, broker: aio_pika.abc.AbstractChannel, tmp_path: Path
) -> None:
    await declare(broker, settings)
    file = write_lines(
        tmp_path / "check.jsonl",
        [
            counted("a@example.com"),
            {**counted("b@example.com"), "db_id": "ten"},
            {"email": "c@example.com"},
        ],
    )
    ran = await backfill(env, str(file), *IMPORT_OPTIONS, "--dry-run")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.failure_line() == f"profile-worker: 2 of 3 lines are invalid (see {file}.errors)"
    assert read_errors(Path(f"{file}.errors")) == {
        2: (400, "invalid parameter 'db_id': Input should be a valid integer"),
        3: (400, "missing parameter 'data' (or at least one profile field)"),
    }
    assert await queued(broker, settings.import_queue) == 0
    assert checkpoints.load(Path(f"{file}.checkpoint")) is None, "nor touches a checkpoint"

    valid = write_lines(tmp_path / "valid.jsonl", [counted("a@example.com")])
    ran = await backfill(env, str(valid), *IMPORT_OPTIONS, "--dry-run")
    assert (ran.code, ran.stderr) == (0, "")
    assert f"dry run: all 1 lines are valid commands for {settings.import_queue}" in ran.stdout


@pytest.mark.timeout(240)  # a hang guard: 3 000 lines took 12 s on mongo-java-server here
async def test_resume_after_a_kill_applies_every_line_once(
    env: dict[str, str],
    settings: Settings,
    broker: aio_pika.abc.AbstractChannel,
    mongo: Any,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    await declare(broker, settings)
    count = 3_000
    emails = [f"r{n}@example.com" for n in range(count)]
    file = write_lines(tmp_path / "resume.jsonl", [counted(email) for email in emails])
    checkpoint = Path(f"{file}.checkpoint")
    args = (str(file), *IMPORT_OPTIONS, "--wait-results")
    quiet = asyncio.subprocess.DEVNULL
    first = await started(env, *args, "--window", "1", stdout=quiet, stderr=quiet)
    await until_checkpoint(checkpoint, lambda state: state.confirmed_through > 0)
    first.kill()
    assert await first.wait() == -signal.SIGKILL
    killed_at = (await until_checkpoint(checkpoint, lambda _: True)).confirmed_through
    assert 0 < killed_at < count, "killed mid-way"
    assert await queued(broker, settings.import_queue) >= killed_at

    await start_worker()
    resumed = await backfill(env, *args, "--resume")
    assert (resumed.code, resumed.stderr) == (0, "")
    assert (
        f"backfill done: {count - killed_at} lines published to {settings.import_queue}, "
        f"{count} answered"
    ) in resumed.stdout, "the answers of the killed run's lines are collected too"
    assert await scores(mongo) == dict.fromkeys(emails, 1)


@pytest.mark.usefixtures("store")
async def test_answers_that_do_not_come_are_collected_by_a_resume(
    env: dict[str, str],
    settings: Settings,
    broker: aio_pika.abc.AbstractChannel,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    await declare(broker, settings)
    file = write_lines(tmp_path / "late.jsonl", [counted("a@example.com"), counted("not-email")])
    args = (str(file), *IMPORT_OPTIONS, "--wait-results", "--timeout-seconds", "1")
    ran = await backfill(env, *args)
    assert ran.code == ExitCode.INCOMPLETE
    assert ran.failure_line() == (
        "profile-worker: 2 of 2 answers did not come (none for 1 s); "
        "`--resume --wait-results` collects them later"
    )
    await start_worker()
    ran = await backfill(env, *args[:-2], "--resume")
    assert ran.code == ExitCode.INCOMPLETE
    assert ran.failure_line() == f"profile-worker: 1 of 2 lines refused (see {file}.errors)"
    assert read_errors(Path(f"{file}.errors")).keys() == {2}


@pytest.mark.usefixtures("worker")
async def test_relation_commands_are_backfilled_too(
    env: dict[str, str], settings: Settings, mongo: Any, tmp_path: Path
) -> None:
    a = await seed_profile(mongo, "a1a1a1a1a1a1a1a1a1a1a1a1", 10)
    b = await seed_profile(mongo, "b1b1b1b1b1b1b1b1b1b1b1b1", 11)
    strengthen = {
        "action": "strengthen",
        "rel_id": 500,
        "profile_a": {"profile_id": a},
        "profile_b": {"profile_id": b},
        "weights": {"weight": 1},
    }
    file = write_lines(tmp_path / "relations.jsonl", [strengthen, strengthen])
    args = (str(file), "--queue", settings.relations_queue, "--account-id", "1", "--wait-results")
    for _ in range(2):
        ran = await backfill(env, *args)
        assert (ran.code, ran.stderr) == (0, "")
        [relation] = await mongo.relations.find().to_list()
        assert relation["props"]["weight"] == 2


async def test_a_checkpoint_of_another_file_is_refused(
    env: dict[str, str], settings: Settings, broker: aio_pika.abc.AbstractChannel, tmp_path: Path
) -> None:
    await declare(broker, settings)
    file = write_lines(tmp_path / "a.jsonl", [counted("a@example.com")])
    assert (await backfill(env, str(file), *IMPORT_OPTIONS)).code == 0
    write_lines(file, [counted("b@example.com")])
    ran = await backfill(env, str(file), *IMPORT_OPTIONS, "--resume")
    assert ran.code == ExitCode.INVALID_INPUT
    assert ran.failure_line().startswith(
        f"profile-worker: the checkpoint {file}.checkpoint belongs to another backfill: "
        "the file's content changed since the run that wrote it"
    )


async def test_partitioned_lines_go_straight_to_the_partitions(
    env: dict[str, str], settings: Settings, mongo: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    partitioned = settings.model_copy(update={"partitions": 2, "partition_poll_seconds": 0.2})
    await start_worker(with_settings=partitioned)
    bodies = [counted(f"p{n}@example.com") for n in range(30)]
    bodies += [counted("p0@example.com"), {"email": "p1@example.com", "data": {"score": 7}}]
    file = write_lines(tmp_path / "partitioned.jsonl", bodies)
    expected = {f"p{n}@example.com": 1 for n in range(2, 30)}
    expected |= {"p0@example.com": 2, "p1@example.com": 7}  # each key's lines in their order
    queue = settings.import_queue

    ran = await backfill(
        {**env, "PW_PARTITIONS": "2"}, str(file), *IMPORT_OPTIONS, "--partitioned", "--wait-results"
    )
    assert (ran.code, ran.stderr) == (0, "")
    assert (
        f"backfill done: 32 lines published to the partitions of {queue} ({queue}.partitions), "
        "32 answered"
    ) in ran.stdout
    assert read_errors(Path(f"{file}.errors")) == {}
    assert await scores(mongo) == expected
    routed = REGISTRY.get_sample_value("profile_worker_routed_total", {"queue": queue})
    assert not routed, "none went through the routing stage"


FAILURES: dict[str, tuple[tuple[str, ...], dict[str, str], ExitCode, str]] = {
    "queue not declared": ((), {}, ExitCode.CONFIGURATION, "the queue 'database_import."),
    "csv to relations": (
        ("--queue", "{relations}", "--format", "csv"),
        {},
        ExitCode.USAGE,
        "CSV rows become flat-form imports; relations commands need JSON lines",
    ),
    "database for relations": (
        ("--queue", "{relations}", "--db-id", "10"),
        {},
        ExitCode.USAGE,
        "relations commands have no 'db_id'",
    ),
    "partitioned with one partition": (
        ("--partitioned",),
        {},
        ExitCode.USAGE,
        "publishing straight to the partitions needs PW_PARTITIONS > 1 (it is 1",
    ),
    "partitions not declared": (
        ("--partitioned",),
        {"PW_PARTITIONS": "2"},
        ExitCode.CONFIGURATION,
        "the exchange 'database_import.",
    ),
    "broker down": (
        (),
        {"PW_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"},
        ExitCode.UNAVAILABLE,
        "broker unreachable at 127.0.0.1:1",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_failures_end_in_one_line_and_their_code(
    case: str, env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    args, overrides, code, text = FAILURES[case]
    file = write_lines(tmp_path / "a.jsonl", [counted("a@example.com")])
    args = tuple(arg.format(relations=settings.relations_queue) for arg in args)
    ran = await backfill({**env, **overrides}, str(file), *args)
    assert ran.code == code, ran.stderr
    assert text in ran.failure_line()
