"""`catalog apply|list|add-token`: the accounts, databases, tokens and bindings the worker reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from worker.cli.common import app, console, load_catalog, with_store
from worker.cli.failures import CommandFailed, ExitCode, describe_validation
from worker.domain.shared.catalog import CatalogFile, TokenEntry

catalog_app = typer.Typer(
    help="Accounts, databases, resources, relation types and tokens.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("apply")
def catalog_apply(file: Annotated[Path, typer.Argument(exists=True, readable=True)]) -> None:
    """Load a YAML/JSON catalog idempotently: entries are upserted by their ids."""
    counts = asyncio.run(with_store(lambda store: store.catalog.apply(load_catalog(file))))
    console.print("catalog applied: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@catalog_app.command("list")
def catalog_list(
    kind: Annotated[
        str,
        typer.Argument(
            help="accounts, databases, resources, relation_types, tokens or broker_users"
        ),
    ],
) -> None:
    """Print the entries of one kind."""
    from worker.store.catalog import KINDS

    if kind not in KINDS:
        raise typer.BadParameter(f"'{kind}' is not one of {', '.join(KINDS)}", param_hint="KIND")
    entries = asyncio.run(with_store(lambda store: store.catalog.entries(kind)))
    for entry in entries:
        console.print_json(entry.model_dump_json())


@catalog_app.command("add-token")
def catalog_add_token(
    account_id: int,
    name: str,
    secret: Annotated[str, typer.Option(help="the token itself, 16 characters or more")],
    db_id: Annotated[
        list[int] | None, typer.Option(help="databases it may touch (all if none)")
    ] = None,
    read_only: bool = False,
) -> None:
    """Store a token (hashed) for an account."""
    try:
        entry = TokenEntry(
            name=name,
            account_id=account_id,
            token=secret,
            db_ids=tuple(db_id) if db_id else None,
            scopes=("read",) if read_only else ("read", "write"),
        )
    except ValidationError as exc:
        raise CommandFailed(
            f"invalid token: {describe_validation(exc)}", ExitCode.INVALID_INPUT
        ) from exc
    asyncio.run(with_store(lambda store: store.catalog.apply(CatalogFile(tokens=(entry,)))))
    console.print(f"token '{name}' stored for account {account_id}")
