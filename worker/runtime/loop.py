"""The event loop the worker runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

import uvloop


def run_loop(main: Coroutine[Any, Any, None], kind: Literal["uvloop", "asyncio"]) -> None:
    """Run `main` to completion on uvloop (the default) or on asyncio's own loop."""
    if kind == "uvloop":
        uvloop.run(main)
    else:
        asyncio.run(main)
