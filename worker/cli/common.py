"""What the commands share: the typer app, the console and the catalog file reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from rich.console import Console

from worker.domain.shared.catalog import CatalogFile
from worker.settings import Settings

app = typer.Typer(
    help="profile-worker: profile import and relations from RabbitMQ commands.",
    no_args_is_help=True,
)
console = Console(width=160)


def load_catalog(path: Path) -> CatalogFile:
    """A catalog file, YAML or JSON."""
    text = path.read_text()
    data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return CatalogFile.model_validate(data or {})


async def with_store(action: Any) -> Any:
    """Run `action(store)` on a store opened from the settings, and close it."""
    from worker.store.mongo import MongoStore

    store = MongoStore.from_settings(Settings())
    try:
        return await action(store)
    finally:
        await store.close()
