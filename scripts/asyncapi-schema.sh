#!/usr/bin/env bash
# Caches the official AsyncAPI 3.0.0 JSON Schema once and prints its path.
# tests/unit/test_asyncapi.py validates docs/asyncapi.yaml against it. It comes from the npm
# package @asyncapi/specs (the AsyncAPI Initiative's own bundle: every definition, binding and
# the draft-07 meta-schema inlined under their $id), pinned and checked by digest, so the test
# never depends on the network once the file is cached.
set -euo pipefail

SPECS_VERSION="6.11.1"
SCHEMA_SHA256="d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
CACHE_DIR="${PROFILE_WORKER_CACHE:-$HOME/.cache/profile-worker}/asyncapi"
TARGET="$CACHE_DIR/asyncapi-specs-$SPECS_VERSION-3.0.0.json"

if [ ! -f "$TARGET" ]; then
  command -v npm >/dev/null || { echo "npm is needed once to fetch @asyncapi/specs" >&2; exit 1; }
  mkdir -p "$CACHE_DIR"
  work="$(mktemp -d "$CACHE_DIR/.fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@asyncapi/specs@$SPECS_VERSION" >/dev/null)
  tar -xzf "$work/asyncapi-specs-$SPECS_VERSION.tgz" -C "$work" package/schemas/3.0.0.json
  echo "$SCHEMA_SHA256  $work/package/schemas/3.0.0.json" | sha256sum --check --quiet
  mv "$work/package/schemas/3.0.0.json" "$TARGET"
fi
echo "$TARGET"
