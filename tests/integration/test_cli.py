"""The `profile-worker` command as an operator meets it: real processes against real services.

Expected failures end in one line on stderr and a documented exit code within seconds; the
worker's life (start, ready, shutdown) is logged and reported on /healthz and /readyz.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from tests.integration.broker_admin import BrokerAdmin
from tests.integration.conftest import command, new_id, worker_environment
from tests.integration.proxy import started_proxy, through
from tests.integration.services import ServiceUrls
from worker.cli.failures import ExitCode
from worker.runtime.client import CommandClient
from worker.settings import Settings

QUICK = 15.0
"""Seconds within which a configuration error must end `run`."""


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command ends with, after checking it is alone of its kind."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("profile-worker:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_url(
    url: str, *, password: str | None = None, port: int | None = None, path: str = ""
) -> str:
    """`url` with one of its parts changed."""
    parts = urlsplit(url)
    user = parts.username or "guest"
    secret = password if password is not None else parts.password or "guest"
    netloc = f"{user}:{secret}@{parts.hostname}:{port or parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, path or parts.path, "", ""))


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return worker_environment(settings, mongodb_timeout_ms=1_000)


@pytest.fixture
def read_only_user(services: ServiceUrls) -> Iterator[tuple[str, str]]:
    """A broker user that may read but neither declare nor publish."""
    admin = BrokerAdmin(services.management_url, services.amqp_url)
    name, password = f"readonly-{uuid.uuid4().hex[:8]}", "read-only-password"
    admin.add_user(name, password, configure="^$", write="^$", read=".*")
    yield name, password
    admin.delete_user(name)


def refused_run_settings(
    settings: Settings, read_only_user: tuple[str, str], occupied_port: int
) -> dict[str, dict[str, Any]]:
    user, password = read_only_user
    amqp = urlsplit(settings.amqp_url)
    read_only_url = urlunsplit(
        (amqp.scheme, f"{user}:{password}@{amqp.hostname}:{amqp.port or 5672}", amqp.path, "", "")
    )
    return {
        "not a URL": {"PW_AMQP_URL": "not-a-url"},
        "a bad address in a list": {"PW_AMQP_URL": f"{settings.amqp_url},rabbit-2:5672"},
        "http MongoDB URL": {"PW_MONGODB_URL": "http://127.0.0.1:27017/"},
        "wrong password": {"PW_AMQP_URL": with_url(settings.amqp_url, password="wrong")},
        "unknown virtual host": {"PW_AMQP_URL": with_url(settings.amqp_url, path="/no-such-vhost")},
        "no permission": {"PW_AMQP_URL": read_only_url},
        "occupied metrics port": {"PW_METRICS_PORT": str(occupied_port)},
    }


EXPECTED_LINES = {
    "not a URL": "invalid setting: PW_AMQP_URL: expected amqp://host",
    "a bad address in a list": "invalid setting: PW_AMQP_URL: address 2 of 2: expected amqp://host",
    "http MongoDB URL": "invalid setting: PW_MONGODB_URL: expected mongodb://host",
    "wrong password": "refused the login of user 'guest': wrong user name or password",
    "unknown virtual host": "refused virtual host 'no-such-vhost'",
    "no permission": "the broker refused user 'readonly-",
    "occupied metrics port": "is already in use (another worker on this host?)",
}


@pytest.mark.parametrize("case", list(EXPECTED_LINES))
def test_configuration_errors_end_run_at_once_with_one_line(
    case: str, settings: Settings, env: dict[str, str], read_only_user: tuple[str, str]
) -> None:
    with socket.socket() as occupant:
        occupant.bind(("0.0.0.0", 0))
        occupant.listen()
        overrides = refused_run_settings(settings, read_only_user, occupant.getsockname()[1])
        started = time.monotonic()
        result = cli("run", env={**env, **overrides[case]})
    assert time.monotonic() - started < QUICK
    assert result.returncode == ExitCode.CONFIGURATION, result.stderr
    line = failure_line(result)
    assert EXPECTED_LINES[case] in line
    assert "wrong@" not in result.stderr, "no password in any line"


def test_unknown_catalog_kind_is_a_usage_error(env: dict[str, str]) -> None:
    result = cli("catalog", "list", "nonsense", env=env)
    assert result.returncode == ExitCode.USAGE
    assert "'nonsense' is not one of accounts, databases" in failure_line(result)


def test_short_token_secret_is_invalid_input(env: dict[str, str]) -> None:
    result = cli("catalog", "add-token", "1", "crm", "--secret", "short", env=env)
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "token: String should have at least 16 characters" in failure_line(result)


def test_database_down_is_unavailable(env: dict[str, str]) -> None:
    closed = f"mongodb://127.0.0.1:{free_port()}/"
    result = cli("catalog", "list", "accounts", env={**env, "PW_MONGODB_URL": closed})
    assert result.returncode == ExitCode.UNAVAILABLE
    line = failure_line(result)
    assert "database unavailable: 127.0.0.1:" in line
    assert "Topology Description" not in line


@pytest.mark.parametrize(
    "args", [("demo",), ("topology",), ("publish", "examples/imports.jsonl")], ids=str
)
def test_broker_down_is_unavailable_at_once(
    args: tuple[str, ...], settings: Settings, env: dict[str, str]
) -> None:
    closed = with_url(settings.amqp_url, port=free_port())
    started = time.monotonic()
    result = cli(*args, env={**env, "PW_AMQP_URL": closed})
    assert time.monotonic() - started < QUICK
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr
    assert "broker unreachable at 127.0.0.1:" in failure_line(result)


def test_a_line_that_is_not_json_is_named(env: dict[str, str], tmp_path: Path) -> None:
    commands = tmp_path / "commands.jsonl"
    commands.write_text('{"account_id": 1}\n{not json\n')
    result = cli("publish", str(commands), env=env)
    assert result.returncode == ExitCode.INVALID_INPUT
    assert f"{commands}:2: not JSON" in failure_line(result)


def test_results_that_never_come_are_incomplete(env: dict[str, str], tmp_path: Path) -> None:
    commands = tmp_path / "commands.jsonl"
    commands.write_text(orjson.dumps(command()).decode() + "\n")
    queue = env["PW_IMPORT_QUEUE"]
    result = cli("publish", str(commands), "--queue", queue, "--timeout-seconds", "1", env=env)
    assert result.returncode == ExitCode.INCOMPLETE
    assert "not every result of 1 commands" in failure_line(result)


@pytest.mark.parametrize("switch", ["--debug", "PW_LOG_LEVEL=DEBUG"])
def test_debug_shows_the_traceback(switch: str, env: dict[str, str]) -> None:
    flags = [switch] if switch.startswith("--") else []
    extra = dict([switch.split("=")]) if "=" in switch else {}
    result = cli(*flags, "catalog", "add-token", "1", "crm", "--secret", "x", env={**env, **extra})
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("profile-worker: invalid token")


def test_run_help_lists_every_setting(env: dict[str, str]) -> None:
    result = cli("run", "--help", env={**env, "COLUMNS": "200"})
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert f"PW_{name.upper()}" in result.stdout


# The worker's life, seen from outside.


def http_get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as refused:
        body, status = refused.read(), refused.code
    except OSError:
        return 0, None
    return status, orjson.loads(body) if path != "/metrics" else body.decode()


async def until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def log_lines(stderr: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]


async def start_run(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "run", env=env, stderr=asyncio.subprocess.PIPE
    )


@pytest.mark.usefixtures("store")  # the catalog the command needs
async def test_lifecycle_is_logged_and_reported(
    settings: Settings, env: dict[str, str], client: CommandClient
) -> None:
    port = free_port()
    process = await start_run({**env, "PW_METRICS_PORT": str(port)})
    try:
        await until(lambda: http_get(port, "/readyz")[0] == 200)
        assert http_get(port, "/healthz") == (200, {"alive": True})
        assert "profile_worker_store_up 1.0" in http_get(port, "/metrics")[1], (
            "the database is known to answer before the first batch"
        )
        await client.send(settings.import_queue, command(), message_id=new_id())
        assert (await client.reply(timeout=30))["error"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    handoffs = {"partition taken", "partition released"}
    everything = log_lines(stderr)
    lines = [line for line in everything if line["msg"] not in handoffs]
    messages = [line["msg"] for line in lines]
    assert messages[:2] == ["starting", "ready"]
    assert messages[-3:] == ["signal received", "shutdown begun", "shutdown finished"]
    commands = {settings.import_queue, settings.relations_queue}  # P = 1: each its own partition
    for change in handoffs:
        assert {line["queue"] for line in everything if line["msg"] == change} == commands
    begun, finished = lines[-2], lines[-1]
    assert set(begun["in_flight"]) == {
        settings.import_queue,
        settings.relations_queue,
        settings.relations_query_queue,
    }
    assert finished["left_for_redelivery"] == 0
    assert finished["acked_while_draining"] == sum(begun["in_flight"].values()), (
        "what was in flight when SIGTERM came was acked while draining, and nothing else"
    )
    assert "guest:guest@" not in stderr.decode(), "passwords are redacted"


async def test_readiness_follows_the_database(settings: Settings, env: dict[str, str]) -> None:
    proxy = await started_proxy(settings.mongodb_url)
    port = free_port()
    process = await start_run(
        {
            **env,
            "PW_METRICS_PORT": str(port),
            "PW_MONGODB_URL": through(settings.mongodb_url, proxy),
            "PW_MONGODB_TIMEOUT_MS": "500",
            "PW_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
        }
    )
    try:
        await until(lambda: http_get(port, "/readyz")[0] == 200)
        await proxy.cut()
        await until(lambda: http_get(port, "/readyz")[0] == 503)
        assert http_get(port, "/readyz")[1] == {
            "broker_connected": True,
            "consumers_running": True,
            "database_reachable": False,
            "partitions": {settings.import_queue: [0], settings.relations_queue: [0]},
            "routing": [],
        }
        assert "profile_worker_store_up 0.0" in http_get(port, "/metrics")[1]
        assert http_get(port, "/healthz")[0] == 200, "alive all along: an outage is not a crash"
        await proxy.start()
        await until(lambda: http_get(port, "/readyz")[0] == 200)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
        await proxy.cut()
    assert process.returncode == 0


async def test_unreachable_broker_is_retried_with_logged_backoff(
    settings: Settings, env: dict[str, str]
) -> None:
    port = free_port()
    closed = with_url(settings.amqp_url, port=free_port())
    process = await start_run({**env, "PW_METRICS_PORT": str(port), "PW_AMQP_URL": closed})
    try:
        await until(lambda: http_get(port, "/readyz")[0] == 503)
        await asyncio.sleep(2)
        assert process.returncode is None, "a transient failure does not end the worker"
        assert http_get(port, "/readyz")[1]["broker_connected"] is False
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    lines = log_lines(stderr)
    retries = [line for line in lines if line["msg"] == "broker unavailable; reconnecting"]
    assert len(retries) >= 2
    delays = [line["delay_seconds"] for line in retries]
    assert delays == sorted(delays), "backoff grows"
    assert delays[-1] > delays[0]
    assert "broker unreachable at 127.0.0.1" in retries[0]["error"]


# `profile-worker partitions`, against a worker holding partitions.


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of the tables `partitions` prints, by queue: [role, ready, unacked, consumers,
    owner]."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 6 and cells[1] and cells[0] != "queue":
            rows[cells[0]] = cells[1:]
    return rows


async def partitions_shown(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, "partitions", *args, env=env)


async def test_partitions_shows_each_partition_its_depth_and_its_owner(
    settings: Settings, services: ServiceUrls, client: CommandClient
) -> None:
    port = free_port()
    env = worker_environment(settings, partitions=2, partition_poll_seconds=0.2)
    process = await start_run({**env, "PW_METRICS_PORT": str(port)})
    families = (settings.import_queue, settings.relations_queue)
    management = ("--management-url", services.management_url)
    held = {queue: [0, 1] for queue in families}
    owner = f"{settings.connection_name} ({socket.gethostname()}:{process.pid})"
    try:
        await until(lambda: (http_get(port, "/readyz")[1] or {}).get("partitions") == held)
        await until(lambda: len(http_get(port, "/readyz")[1]["routing"]) == 2)
        # the management API's statistics lag the broker by up to 5 s
        deadline = time.monotonic() + 30
        while True:
            shown = await partitions_shown(env, *management)
            assert shown.returncode == 0, shown.stderr
            rows = table_rows(shown.stdout)
            seen = all(row[4] == owner and row[2] != "-" for row in rows.values())
            if seen or time.monotonic() > deadline:  # owners and unacked counts both known
                break
            await asyncio.sleep(1)
        for queue in families:
            assert f"{queue}: 2 partitions, 1 live process" in shown.stdout
            assert rows[f"{queue}.partition.0"] == ["partition 0", "0", "0", "1", owner]
            assert rows[f"{queue}.partition.1"] == ["partition 1", "0", "0", "1", owner]
            assert rows[queue] == ["routing stage", "0", "0", "1", owner]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0

    for n in range(3):  # nobody routes them now
        await client.send(settings.import_queue, command(), message_id=f"waiting-{n}", reply=False)
    closed = ("--management-url", f"http://127.0.0.1:{free_port()}/")
    shown = await partitions_shown(env, *closed)
    assert shown.returncode == 0, shown.stderr
    assert "owner and unacked unknown (-): management API http://127.0.0.1:" in shown.stdout
    rows = table_rows(shown.stdout)
    assert rows[settings.import_queue] == ["routing stage", "3", "-", "0", "-"]
    assert rows[f"{settings.import_queue}.partition.1"] == ["partition 1", "0", "-", "0", "-"]
    assert f"{settings.import_queue}: 2 partitions, 0 live processes" in shown.stdout

    wider = await partitions_shown(env, *management, "--partitions", "4")
    assert wider.returncode == ExitCode.CONFIGURATION
    assert rows_absent(wider.stdout) == {f"{q}.partition.{i}" for q in families for i in (2, 3)}
    assert f"no queue {settings.import_queue}.partition.2, " in failure_line(wider)


def rows_absent(stdout: str) -> set[str]:
    return {queue for queue, row in table_rows(stdout).items() if row[1] == "absent"}


async def test_partitions_with_one_partition_shows_the_command_queue(
    settings: Settings, env: dict[str, str], services: ServiceUrls
) -> None:
    missing = await partitions_shown(env, "--management-url", services.management_url)
    assert missing.returncode == ExitCode.CONFIGURATION
    assert "declare the topology with `profile-worker topology`" in failure_line(missing)

    assert cli("topology", env=env).returncode == 0
    shown = await partitions_shown(env, "--management-url", services.management_url)
    assert shown.returncode == 0, shown.stderr
    rows = table_rows(shown.stdout)
    assert rows.keys() == {settings.import_queue, settings.relations_queue}
    for role, ready, unacked, consumers, owner in rows.values():
        assert (role, ready, consumers, owner) == ("partition 0", "0", "0", "none")
        assert unacked in ("0", "-"), "- while the management API has no statistics yet"
    assert "(P = 1: the command queue is its own partition)" in shown.stdout
