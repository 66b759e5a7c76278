"""Nothing above the store knows about MongoDB: only `worker/store/` imports the driver.

Like an import-linter contract, checked on the source with `ast`, so imports inside functions
and behind `TYPE_CHECKING` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

WORKER = Path(__file__).resolve().parents[2] / "worker"
STORE = WORKER / "store"
DRIVER_PACKAGES = frozenset({"bson", "pymongo", "gridfs"})


def driver_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a driver package in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[0] in DRIVER_PACKAGES]
    return found


def test_only_the_store_imports_the_database_driver() -> None:
    modules = [path for path in sorted(WORKER.rglob("*.py")) if STORE not in path.parents]
    assert len(modules) > 20, f"found only {len(modules)} modules under {WORKER}"
    leaks = [
        f"{path.relative_to(WORKER.parent)}:{line}: imports {module}"
        for path in modules
        for line, module in driver_imports(path.read_text())
    ]
    assert not leaks, "the driver is the store's business:\n" + "\n".join(leaks)


def test_the_check_sees_every_form_of_import() -> None:
    source = """
import bson
import os, pymongo.errors as errors
from bson import ObjectId
from pymongo.errors import PyMongoError
from . import pymongo_like
from worker.store import mongo

def later() -> None:
    from pymongo import AsyncMongoClient
"""
    assert [module for _, module in driver_imports(source)] == [
        "bson",
        "pymongo.errors",
        "bson",
        "pymongo.errors",
        "pymongo",
    ]
