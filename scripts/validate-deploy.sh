#!/usr/bin/env bash
# Validates what deploy/ and docker-compose.yml describe against real schemas, strictly:
#   - deploy/kubernetes: with kubeconform -strict against the Kubernetes schemas of each version
#     in KUBERNETES_VERSIONS, and KEDA's ScaledObject and TriggerAuthentication against KEDA's
#     own CRDs. An unknown field, a wrong type or a kind without a schema is an error (no
#     -ignore-missing-schemas). kustomization.yaml must list every manifest but the
#     *.example.yaml ones, which are validated too;
#   - docker-compose.yml: against the Compose Specification schema, and with
#     `docker compose config` where the compose plugin is installed (it needs no engine);
#   - deploy/grafana/*.json: every query parses as PromQL (tests/unit/test_deploy.py checks
#     that the metrics it names exist).
# Usage: scripts/validate-deploy.sh [ROOT]   ROOT holds deploy/ and docker-compose.yml (default:
#        this repository). Exit status 0 when everything is valid. PW_KUBERNETES_VERSIONS
#        (e.g. "1.33.0") replaces the Kubernetes versions below.
# Tools, fetched once (pinned below) into $CACHE_DIR, then used offline:
#   - kubeconform, built by `go install` from the Go module proxy;
#   - the Kubernetes JSON schemas bundled in the PyPI package kubernetes-validate, made
#     standalone for kubeconform by scripts/deploy_schemas.py (only the versions used are kept);
#   - a venv with, from PyPI, check-jsonschema (its vendored copy of the Compose Specification
#     schema), promql-parser (Prometheus's PromQL grammar, in Rust) and PyYAML (for
#     scripts/deploy_schemas.py);
#   - KEDA's CRDs (config/crd/bases of the Go module github.com/kedacore/keda/v2), turned into
#     strict JSON schemas by scripts/deploy_schemas.py.
# Go's module and build caches for these live in a temporary directory that is removed after.
set -euo pipefail

KUBECONFORM_VERSION=v0.8.0
KEDA_VERSION=v2.20.2
KUBERNETES_VALIDATE_VERSION=1.37.0 # bundles schemas of Kubernetes 1.25 to 1.37
CHECK_JSONSCHEMA_VERSION=0.39.0
PYYAML_VERSION=6.0.3 # for scripts/deploy_schemas.py
PROMQL_PARSER_VERSION=0.11.0
# 1.31: the oldest where every field used here is GA (unhealthyPodEvictionPolicy); 1.37: the newest
KUBERNETES_VERSIONS="${PW_KUBERNETES_VERSIONS:-1.31.0 1.37.0}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${1:-$HERE/..}" && pwd)"
CACHE_DIR="${PROFILE_WORKER_CACHE:-$HOME/.cache/profile-worker}/deploy-check"
KUBECONFORM="$CACHE_DIR/bin/kubeconform-$KUBECONFORM_VERSION"
TOOLS="check-jsonschema==$CHECK_JSONSCHEMA_VERSION PyYAML==$PYYAML_VERSION promql-parser==$PROMQL_PARSER_VERSION"
VENV="$CACHE_DIR/venv-$(echo "$TOOLS" | sha256sum | cut -c1-12)"
K8S_SCHEMAS="$CACHE_DIR/schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
KEDA_SCHEMAS="$CACHE_DIR/schemas/keda-$KEDA_VERSION"
# Schemas made by an older scripts/deploy_schemas.py are made again.
CONVERTER="$(sha256sum "$HERE/deploy_schemas.py" | cut -c1-16)"
K8S_LOCATION="$K8S_SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
KEDA_LOCATION="$KEDA_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

log() { printf '[validate-deploy] %s\n' "$*" >&2; }

made() { [ "$(cat "$1/.complete" 2>/dev/null)" = "$CONVERTER" ]; } # schemas in $1 are current

need_go() { command -v go >/dev/null 2>&1 || { log "Go is needed once, to fetch $1"; exit 1; }; }

go_tmp() { # go with module and build caches in $WORK, writable so that they can be removed
  GOMODCACHE="$WORK/go/mod" GOCACHE="$WORK/go/build" GOFLAGS="${GOFLAGS:-} -modcacherw" go "$@"
}

install_kubeconform() {
  [ -x "$KUBECONFORM" ] && return 0
  need_go kubeconform
  log "building kubeconform $KUBECONFORM_VERSION from the Go module proxy (once)"
  GOBIN="$WORK/bin" go_tmp install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  mkdir -p "$(dirname "$KUBECONFORM")"
  mv "$WORK/bin/kubeconform" "$KUBECONFORM"
}

install_venv() { # a venv cannot move, so it is built in place and marked complete at the end
  [ -f "$VENV/.complete" ] && return 0
  log "installing $TOOLS from PyPI (once)"
  rm -rf "$VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  # shellcheck disable=SC2086 # a list of requirements
  pip_quiet install $TOOLS
  touch "$VENV/.complete"
}

pip_quiet() { "$VENV/bin/python" -m pip -q --disable-pip-version-check --no-cache-dir "$@"; }

kubernetes_schemas() { # version
  local out="$K8S_SCHEMAS/v$1-standalone-strict" wheel="$WORK/wheel"
  made "$out" && return 0
  if [ ! -d "$wheel" ]; then
    log "fetching kubernetes-validate $KUBERNETES_VALIDATE_VERSION's schemas from PyPI (once)"
    pip_quiet download --no-deps -d "$wheel" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  "$VENV/bin/python" "$HERE/deploy_schemas.py" kubernetes "$wheel"/*.whl "$1" "$WORK/kubernetes-$1"
  rm -rf "$out" && mkdir -p "$K8S_SCHEMAS"
  mv "$WORK/kubernetes-$1" "$out" && echo "$CONVERTER" >"$out/.complete"
}

keda_schemas() {
  made "$KEDA_SCHEMAS" && return 0
  need_go "KEDA's CRDs"
  log "fetching KEDA $KEDA_VERSION's CRDs from the Go module proxy (once)"
  local dir
  dir=$(cd "$WORK" && go_tmp mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { log "could not download github.com/kedacore/keda/v2@$KEDA_VERSION"; exit 1; }
  "$VENV/bin/python" "$HERE/deploy_schemas.py" crds "$WORK/keda" "$dir"/config/crd/bases/*.yaml
  rm -rf "$KEDA_SCHEMAS" && mkdir -p "$(dirname "$KEDA_SCHEMAS")"
  mv "$WORK/keda" "$KEDA_SCHEMAS" && echo "$CONVERTER" >"$KEDA_SCHEMAS/.complete"
}

install_tools() {
  mkdir -p "$CACHE_DIR"
  WORK="$(mktemp -d "$CACHE_DIR/.work.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  # one installer at a time (parallel test runs share the cache); validation needs no lock
  exec 9>"$CACHE_DIR/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  install_kubeconform
  install_venv
  local version
  for version in $KUBERNETES_VERSIONS; do kubernetes_schemas "$version"; done
  keda_schemas
  exec 9>&-
}

install_tools

status=0
listed=$("$VENV/bin/python" "$HERE/deploy_schemas.py" manifests "$ROOT/deploy/kubernetes") || status=1
if [ "$status" = 0 ]; then
  mapfile -t manifests <<<"$listed"
  for version in $KUBERNETES_VERSIONS; do
    log "deploy/kubernetes against Kubernetes $version and KEDA $KEDA_VERSION"
    "$KUBECONFORM" -strict -summary -kubernetes-version "$version" \
      -schema-location "$K8S_LOCATION" -schema-location "$KEDA_LOCATION" "${manifests[@]}" || status=1
  done
fi

log "docker-compose.yml against the Compose Specification"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$ROOT/docker-compose.yml" || status=1
if docker compose version >/dev/null 2>&1; then
  log "docker-compose.yml with docker compose config"
  (cd "$ROOT" && docker compose -f docker-compose.yml config --quiet) || status=1
fi

log "deploy/grafana dashboards' PromQL"
"$VENV/bin/python" "$HERE/deploy_schemas.py" promql "$ROOT"/deploy/grafana/*.json || status=1

if [ "$status" = 0 ]; then log "all valid"; else log "INVALID: see above"; fi
exit "$status"
