"""What each expected failure means to an operator: one line and its exit code."""

from __future__ import annotations

import aiormq
import orjson
import pytest
from pydantic import ValidationError
from pymongo.errors import (
    ExecutionTimeout,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from worker.cli.common import load_settings
from worker.cli.failures import CommandFailed, ExitCode, explain
from worker.errors import BrokerUnavailable, ConfigurationError, StoreUnavailable
from worker.settings import Settings
from worker.store.errors import translated, translated_now

TOPOLOGY_DUMP = (
    "127.0.0.1:27999: [Errno 111] Connection refused (configured timeouts: connectTimeoutMS: "
    "1000.0ms), Timeout: 1.0s, Topology Description: <TopologyDescription ...>"
)


def validation_error() -> ValidationError:
    try:
        Settings(batch_max_size=0)
    except ValidationError as exc:
        return exc
    raise AssertionError("batch_max_size=0 should be refused")


def from_the_store(driver_error: PyMongoError) -> BaseException:
    """What the store raises when the driver raises `driver_error` (the CLI sees only that)."""
    try:
        with translated_now():
            raise driver_error
    except BaseException as exc:
        return exc
    raise AssertionError("unreachable")


def json_error() -> orjson.JSONDecodeError:
    try:
        orjson.loads(b"{nope")
    except orjson.JSONDecodeError as exc:
        return exc
    raise AssertionError("not JSON")


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (CommandFailed("3 lines refused", ExitCode.INCOMPLETE), ExitCode.INCOMPLETE, "3 lines"),
        (ConfigurationError("wrong vhost"), ExitCode.CONFIGURATION, "wrong vhost"),
        (from_the_store(InvalidURI("bad uri")), ExitCode.CONFIGURATION, "bad uri"),
        (
            from_the_store(OperationFailure("Authentication failed.", code=18)),
            ExitCode.CONFIGURATION,
            "the database refused the credentials: Authentication failed.",
        ),
        (
            from_the_store(ServerSelectionTimeoutError(TOPOLOGY_DUMP)),
            ExitCode.UNAVAILABLE,
            "database unavailable: 127.0.0.1:27999: [Errno 111] Connection refused",
        ),
        (StoreUnavailable("database unavailable: x"), ExitCode.UNAVAILABLE, "x"),
        (BrokerUnavailable("broker unreachable at h:5672"), ExitCode.UNAVAILABLE, "h:5672"),
        (
            aiormq.exceptions.AMQPConnectionError(111, "Connect call failed"),
            ExitCode.UNAVAILABLE,
            "broker unreachable",
        ),
        (validation_error(), ExitCode.INVALID_INPUT, "batch_max_size: Input should be"),
        (json_error(), ExitCode.INVALID_INPUT, "unreadable input"),
        (TimeoutError(), ExitCode.INCOMPLETE, "timed out: no answer in time"),
        (KeyError("surprise"), ExitCode.INTERNAL, "internal error: KeyError"),
    ],
)
def test_each_failure_has_its_code_and_one_line(
    exc: BaseException, code: ExitCode, line: str
) -> None:
    got_code, got_line = explain(exc)
    assert got_code == code
    assert line in got_line
    assert "\n" not in got_line
    assert "Topology Description" not in got_line


def test_settings_errors_name_the_variable_and_hide_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PW_AMQP_URL", "http://crm:hunter2-secret@rabbit/")
    monkeypatch.setenv("PW_PREFETCH_COUNT", "lots")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    code, line = explain(refused.value)
    assert code == ExitCode.CONFIGURATION
    assert "PW_AMQP_URL: expected amqp://host" in line
    assert "PW_PREFETCH_COUNT: Input should be a valid integer" in line
    assert "hunter2-secret" not in line


@pytest.mark.parametrize(
    ("driver_error", "kind"),
    [
        (InvalidURI("bad uri"), ConfigurationError),
        (OperationFailure("not authorized", code=13), ConfigurationError),
        (OperationFailure("Authentication failed.", code=18), ConfigurationError),
        (ServerSelectionTimeoutError(TOPOLOGY_DUMP), StoreUnavailable),
        (ExecutionTimeout("operation exceeded time limit", code=50), StoreUnavailable),
    ],
)
async def test_the_store_raises_driver_errors_as_the_workers_own(
    driver_error: PyMongoError, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as raised:
        async with translated():
            raise driver_error
    assert raised.value.__cause__ is driver_error


@pytest.mark.parametrize(
    "driver_error",
    [OperationFailure("E11000 duplicate key", code=11000), PyMongoError("bulk write failed")],
)
async def test_other_driver_errors_stay_unexpected(driver_error: PyMongoError) -> None:
    with pytest.raises(type(driver_error)) as raised:
        async with translated():
            raise driver_error
    assert raised.value is driver_error
    assert explain(raised.value)[0] == ExitCode.INTERNAL
