"""The `profile-worker` command: one module per command group, registered here."""

from __future__ import annotations

import sys
import traceback

import typer
from typer.exceptions import TyperException

from worker.cli import asyncapi, backfill, catalog, demo, partitions, publish, serve
from worker.cli.common import Options, app
from worker.cli.failures import explain


def main() -> None:
    """Run a command; an expected failure ends it with one line and its exit code."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("profile-worker: interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:
        if not exc.format_message():  # help was shown instead of running a command
            sys.exit(exc.exit_code)
        print(f"profile-worker: {exc.format_message()} (see --help)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        code, line = explain(exc)
        if Options.debug:
            traceback.print_exception(exc)
        print(f"profile-worker: {line}", file=sys.stderr)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = [
    "app",
    "asyncapi",
    "backfill",
    "catalog",
    "demo",
    "main",
    "partitions",
    "publish",
    "serve",
]
