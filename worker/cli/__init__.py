"""The `profile-worker` command: one module per command group, registered here."""

from __future__ import annotations

from worker.cli import catalog, demo, publish, serve
from worker.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "catalog", "demo", "main", "publish", "serve"]
