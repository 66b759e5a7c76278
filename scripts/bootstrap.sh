#!/usr/bin/env bash
# Creates .venv (once) and installs profile-worker with its test and dev extras into it, and
# caches the official AsyncAPI schema the tests validate docs/asyncapi.yaml against.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
# The official AsyncAPI schema the document test validates against: cached once, with npm. Only
# that test needs it, so without npm the rest (`make demo`) still works, and that test says why.
scripts/asyncapi-schema.sh >/dev/null ||
  echo "bootstrap: the AsyncAPI schema is not cached (npm missing?); test_asyncapi.py will fail" >&2
