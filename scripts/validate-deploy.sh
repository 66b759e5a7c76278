#!/usr/bin/env bash
# Validates what deploy/ and docker-compose.yml describe against real schemas, strictly:
#   - every deploy/*/ with a kustomization.yaml: deploy/kubernetes (the worker) and
#     deploy/kubernetes-rabbitmq-cluster-operator (an overlay of it: the worker against a
#     RabbitMQ cluster of the RabbitMQ Cluster Operator). Each directory's files one by one,
#     then what `kustomize build` makes of it (an overlay with its base and patches applied),
#     with kubeconform -strict against the Kubernetes schemas of each version in
#     KUBERNETES_VERSIONS; KEDA's ScaledObject and TriggerAuthentication against KEDA's own
#     CRDs; RabbitmqCluster against the Cluster Operator's CRD, and User, Permission (and the
#     other rabbitmq.com kinds) against the Messaging Topology Operator's CRDs. An unknown
#     field, a wrong type or a kind without a schema is an error (no -ignore-missing-schemas).
#     Each kustomization.yaml must list every manifest of its directory (as a resource, or a
#     patch, which is validated in the build only) but the *.example.yaml ones, which are
#     validated too but not built;
#   - docker-compose.yml: against the Compose Specification schema, and with
#     `docker compose config` where the compose plugin is installed (it needs no engine);
#   - deploy/grafana/*.json: every query parses as PromQL (tests/unit/test_deploy.py checks
#     that the metrics it names exist).
# Usage: scripts/validate-deploy.sh [ROOT]   ROOT holds deploy/ and docker-compose.yml (default:
#        this repository). Exit status 0 when everything is valid. PW_KUBERNETES_VERSIONS
#        (e.g. "1.33.0") replaces the Kubernetes versions below.
# Tools, fetched once (pinned below) into $CACHE_DIR, then used offline:
#   - kubeconform and kustomize, built by `go install` from the Go module proxy;
#   - the Kubernetes JSON schemas bundled in the PyPI package kubernetes-validate, made
#     standalone for kubeconform by scripts/deploy_schemas.py (only the versions used are kept);
#   - a venv with, from PyPI, check-jsonschema (its vendored copy of the Compose Specification
#     schema), promql-parser (Prometheus's PromQL grammar, in Rust) and PyYAML (for
#     scripts/deploy_schemas.py);
#   - KEDA's CRDs (config/crd/bases of the Go module github.com/kedacore/keda/v2) and the RabbitMQ
#     operators' (config/crd/bases of github.com/rabbitmq/cluster-operator/v2 and of
#     github.com/rabbitmq/messaging-topology-operator), from the Go module proxy, turned into
#     strict JSON schemas by scripts/deploy_schemas.py.
# Go's module and build caches for these live in a temporary directory that is removed after.
set -euo pipefail

KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.2 # the newest that builds with Go 1.26 (v5.8.3 needs 1.27)
KEDA_VERSION=v2.20.2
# served by the Go module proxy here (it refused v2.22.2 and v2.22.3, the newest); its default
# image, rabbitmq:4.1.1-management, is the one deploy/kubernetes-rabbitmq-cluster-operator names
RABBITMQ_CLUSTER_OPERATOR_VERSION=v2.16.0
RABBITMQ_TOPOLOGY_OPERATOR_VERSION=v1.20.1
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
KUSTOMIZE="$CACHE_DIR/bin/kustomize-$KUSTOMIZE_VERSION"
TOOLS="check-jsonschema==$CHECK_JSONSCHEMA_VERSION PyYAML==$PYYAML_VERSION promql-parser==$PROMQL_PARSER_VERSION"
VENV="$CACHE_DIR/venv-$(echo "$TOOLS" | sha256sum | cut -c1-12)"
K8S_SCHEMAS="$CACHE_DIR/schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
KEDA_SCHEMAS="$CACHE_DIR/schemas/keda-$KEDA_VERSION"
RABBITMQ_SCHEMAS="$CACHE_DIR/schemas/rabbitmq-$RABBITMQ_CLUSTER_OPERATOR_VERSION-$RABBITMQ_TOPOLOGY_OPERATOR_VERSION"
# Schemas made by an older scripts/deploy_schemas.py are made again.
CONVERTER="$(sha256sum "$HERE/deploy_schemas.py" | cut -c1-16)"
K8S_LOCATION="$K8S_SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
KEDA_LOCATION="$KEDA_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
RABBITMQ_LOCATION="$RABBITMQ_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

log() { printf '[validate-deploy] %s\n' "$*" >&2; }

made() { [ "$(cat "$1/.complete" 2>/dev/null)" = "$CONVERTER" ]; } # schemas in $1 are current

need_go() { command -v go >/dev/null 2>&1 || { log "Go is needed once, to fetch $1"; exit 1; }; }

go_tmp() { # go with module and build caches in $WORK, writable so that they can be removed
  GOMODCACHE="$WORK/go/mod" GOCACHE="$WORK/go/build" GOFLAGS="${GOFLAGS:-} -modcacherw" go "$@"
}

go_install() { # NAME TARGET PACKAGE@VERSION: builds the command NAME once, into TARGET
  [ -x "$2" ] && return 0
  need_go "$1"
  log "building $1 ${3##*@} from the Go module proxy (once)"
  GOBIN="$WORK/bin" go_tmp install "$3"
  mkdir -p "$(dirname "$2")"
  mv "$WORK/bin/$1" "$2"
}

module_dir() { # MODULE@VERSION: downloads it from the Go module proxy, prints where it is
  local json dir
  json=$(cd "$WORK" && go_tmp mod download -json "$1") || true
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  if [ -z "$dir" ]; then
    log "could not download $1 from the Go module proxy:"
    sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" >&2
    return 1
  fi
  echo "$dir"
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

crd_schemas() { # OUT MODULE@VERSION...: the CRDs in config/crd/bases of each module, as schemas
  local out="$1" module dir sources=()
  shift
  for module in "$@"; do
    dir=$(module_dir "$module")
    sources+=("$dir"/config/crd/bases/*.yaml)
  done
  "$VENV/bin/python" "$HERE/deploy_schemas.py" crds "$WORK/crds" "${sources[@]}"
  rm -rf "$out" && mkdir -p "$(dirname "$out")"
  mv "$WORK/crds" "$out" && echo "$CONVERTER" >"$out/.complete"
}

keda_schemas() {
  made "$KEDA_SCHEMAS" && return 0
  need_go "KEDA's CRDs"
  log "fetching KEDA $KEDA_VERSION's CRDs from the Go module proxy (once)"
  crd_schemas "$KEDA_SCHEMAS" "github.com/kedacore/keda/v2@$KEDA_VERSION"
}

rabbitmq_schemas() { # RabbitmqCluster; User, Permission and the other topology kinds
  made "$RABBITMQ_SCHEMAS" && return 0
  need_go "the RabbitMQ operators' CRDs"
  log "fetching the CRDs of RabbitMQ's Cluster Operator $RABBITMQ_CLUSTER_OPERATOR_VERSION and" \
    "Messaging Topology Operator $RABBITMQ_TOPOLOGY_OPERATOR_VERSION from the Go module proxy (once)"
  crd_schemas "$RABBITMQ_SCHEMAS" \
    "github.com/rabbitmq/cluster-operator/v2@$RABBITMQ_CLUSTER_OPERATOR_VERSION" \
    "github.com/rabbitmq/messaging-topology-operator@$RABBITMQ_TOPOLOGY_OPERATOR_VERSION"
}

install_tools() {
  mkdir -p "$CACHE_DIR"
  WORK="$(mktemp -d "$CACHE_DIR/.work.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  # one installer at a time (parallel test runs share the cache); validation needs no lock
  exec 9>"$CACHE_DIR/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  go_install kubeconform "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  go_install kustomize "$KUSTOMIZE" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  install_venv
  local version
  for version in $KUBERNETES_VERSIONS; do kubernetes_schemas "$version"; done
  keda_schemas
  rabbitmq_schemas
  exec 9>&-
}

install_tools

status=0
manifests=() # each directory's files one by one
built=()     # what kustomize builds of each directory
for kustomization in "$ROOT"/deploy/*/kustomization.yaml; do
  dir="$(dirname "$kustomization")"
  name="deploy/$(basename "$dir")"
  listed=$("$VENV/bin/python" "$HERE/deploy_schemas.py" manifests "$dir") || { status=1; continue; }
  [ -n "$listed" ] && mapfile -t -O "${#manifests[@]}" manifests <<<"$listed"
  log "$name: kustomize build"
  out="$WORK/kustomize-build/$name.yaml"
  mkdir -p "$(dirname "$out")"
  if "$KUSTOMIZE" build "$dir" >"$out"; then built+=("$out"); else status=1; fi
done
for version in $KUBERNETES_VERSIONS; do
  [ $((${#manifests[@]} + ${#built[@]})) -gt 0 ] || break # kubeconform would read stdin
  log "deploy/*/ and their kustomize builds against Kubernetes $version, KEDA $KEDA_VERSION and" \
    "the RabbitMQ operators ($RABBITMQ_CLUSTER_OPERATOR_VERSION, $RABBITMQ_TOPOLOGY_OPERATOR_VERSION)"
  "$KUBECONFORM" -strict -summary -kubernetes-version "$version" -schema-location "$K8S_LOCATION" \
    -schema-location "$KEDA_LOCATION" -schema-location "$RABBITMQ_LOCATION" \
    "${manifests[@]}" "${built[@]}" || status=1
done

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
