"""Expected failures of any command become one line on stderr and a documented exit code.

A traceback is for bugs: `--debug` (or `PW_LOG_LEVEL=DEBUG`) shows it for anything.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import aiormq
import orjson
import yaml
from pydantic import ValidationError

from worker.errors import BrokerUnavailable, ConfigurationError, StoreUnavailable


class ExitCode(enum.IntEnum):
    """The exit codes of every `profile-worker` command (the README lists them)."""

    OK = 0
    INTERNAL = 1
    """A bug: the line says so and `--debug` shows the traceback."""
    USAGE = 2
    """Wrong arguments or options (typer's own)."""
    CONFIGURATION = 3
    """A setting is wrong: URL, credentials, virtual host, permissions, occupied port."""
    UNAVAILABLE = 4
    """The broker or the database cannot be reached."""
    INVALID_INPUT = 5
    """A file or a value given to the command does not hold what it should."""
    INCOMPLETE = 6
    """Not every command was answered in time, or some input lines were refused."""


class CommandFailed(Exception):
    """A command's own expected failure, with its exit code."""

    def __init__(self, text: str, code: ExitCode) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def explain(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one line that an exception means to an operator."""
    if isinstance(exc, CommandFailed):
        return exc.code, exc.text
    for kinds, code, describe in MEANINGS:
        if isinstance(exc, kinds):
            return code, describe(exc)
    return ExitCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc} (--debug shows more)"


Kinds = type[BaseException] | tuple[type[BaseException], ...]
MEANINGS: tuple[tuple[Kinds, ExitCode, Callable[[Any], str]], ...] = (
    (ConfigurationError, ExitCode.CONFIGURATION, str),
    (
        aiormq.exceptions.ChannelAccessRefused,
        ExitCode.CONFIGURATION,
        lambda exc: f"the broker refused access: {exc}",
    ),
    ((BrokerUnavailable, StoreUnavailable), ExitCode.UNAVAILABLE, str),
    (
        (aiormq.exceptions.AMQPConnectionError, ConnectionError),
        ExitCode.UNAVAILABLE,
        lambda exc: f"broker unreachable: {exc}",
    ),
    (ValidationError, ExitCode.INVALID_INPUT, lambda exc: describe_validation(exc)),
    (
        (yaml.YAMLError, orjson.JSONDecodeError, UnicodeDecodeError),
        ExitCode.INVALID_INPUT,
        lambda exc: "unreadable input: " + str(exc).split("\n", 1)[0],
    ),
    (
        TimeoutError,
        ExitCode.INCOMPLETE,
        lambda exc: f"timed out: {str(exc) or 'no answer in time'}",
    ),
)
"""Exception kinds in the order they are tried (subclasses before their bases)."""


def describe_validation(exc: ValidationError, *, environment: bool = False) -> str:
    """A validation error in one line: each offending place and what is wrong with it."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        place = ".".join(str(part) for part in error["loc"]) or exc.title
        if environment and not place.isupper():
            place = f"PW_{place.upper()}"
        problems.append(f"{place}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
