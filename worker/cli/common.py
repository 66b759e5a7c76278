"""What the commands share: the typer app, the console, settings and the catalog file reader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from worker.cli.failures import describe_validation
from worker.domain.shared.catalog import CatalogFile
from worker.errors import ConfigurationError
from worker.observability import configure_logging
from worker.settings import Settings

app = typer.Typer(
    help="profile-worker: profile import and relations from RabbitMQ commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console(width=160)


class Options:
    """The global options, set once by the callback below."""

    debug = os.environ.get("PW_LOG_LEVEL", "").upper() == "DEBUG"


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of any failure.")
    ] = False,
) -> None:
    """profile-worker: profile import and relations from RabbitMQ commands.

    Settings come from PW_* environment variables (see `profile-worker run --help`).
    """
    Options.debug = Options.debug or debug
    configure_logging("DEBUG" if Options.debug else "WARNING")


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment; a wrong value is a configuration error, named."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        text = describe_validation(exc, environment=True)
        raise ConfigurationError(f"invalid setting: {text}") from exc


def load_catalog(path: Path) -> CatalogFile:
    """A catalog file, YAML or JSON."""
    text = path.read_text()
    data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return CatalogFile.model_validate(data or {})


async def with_store(action: Any) -> Any:
    """Run `action(store)` on a store opened from the settings, and close it."""
    from worker.store.mongo import MongoStore

    store = MongoStore.from_settings(load_settings())
    try:
        return await action(store)
    finally:
        await store.close()
