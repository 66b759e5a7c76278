"""`asyncapi`: the AsyncAPI 3.0.0 document of the queues, messages and events, from the models."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from worker.asyncapi import asyncapi_document
from worker.cli.common import app, load_settings


class DocumentFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def render(document: dict[str, Any], document_format: DocumentFormat) -> str:
    """The document as text; key order is the generator's, so the output is stable."""
    if document_format is DocumentFormat.json:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the document here instead of to stdout.")
    ] = None,
    document_format: Annotated[
        DocumentFormat, typer.Option("--format", help="yaml or json.")
    ] = DocumentFormat.yaml,
) -> None:
    """Print (or write) the AsyncAPI 3.0.0 document for the queue names of the settings."""
    text = render(asyncapi_document(load_settings()), document_format)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
