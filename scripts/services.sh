#!/usr/bin/env bash
# Brings up the two services profile-worker needs, natively and idempotently:
#   RabbitMQ from Debian's rabbitmq-server package, and FerretDB (MongoDB wire protocol,
#   SQLite handler) built once from the Go module proxy and cached.
# With a reachable Docker engine and PW_SERVICES=docker it uses docker compose instead.
# Usage: scripts/services.sh start|stop|status|env
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
CACHE_DIR="${PROFILE_WORKER_CACHE:-$HOME/.cache/profile-worker}"
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION"
FERRETDB_DATA="$CACHE_DIR/ferretdb-data"
FERRETDB_PIDFILE="$CACHE_DIR/ferretdb.pid"
FERRETDB_LOG="$CACHE_DIR/ferretdb.log"
MONGO_PORT="${PW_MONGO_PORT:-27017}"
AMQP_PORT=5672
AMQP_URL_SERVED="amqp://guest:guest@127.0.0.1:${AMQP_PORT}/"
MONGODB_URL_SERVED="mongodb://127.0.0.1:${MONGO_PORT}/"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 4; i++)); do port_open "$1" && return 0; sleep 0.25; done
  return 1
}

install_rabbitmq() {
  command -v rabbitmq-server >/dev/null 2>&1 && return 0
  log "installing rabbitmq-server from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
}

start_rabbitmq() {
  install_rabbitmq
  as_root rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_consistent_hash_exchange >/dev/null
  if ! as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
  fi
  # await_startup can fail before the node has registered: retry in a bounded loop.
  local i
  for ((i = 0; i < 30; i++)); do
    if as_root rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; then
      wait_for_port "$AMQP_PORT" 30 && { log "RabbitMQ is up"; return 0; }
    fi
    sleep 2
  done
  log "RabbitMQ did not start"; return 1
}

build_ferretdb() {
  [ -x "$FERRETDB_BIN" ] && return 0
  command -v go >/dev/null 2>&1 || { log "Go is needed to build FerretDB"; return 1; }
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (once; cached in $CACHE_DIR)"
  mkdir -p "$CACHE_DIR/bin"
  # `go install pkg@version` asks the proxy for the module's version list, which may be refused,
  # and the module zip lacks the build/version/version.txt that FerretDB's own build generates.
  # So: download that exact version, copy it, write the version file, build.
  local dir src
  dir=$(cd "$CACHE_DIR" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { log "could not download the FerretDB module"; return 1; }
  src=$(mktemp -d)
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && GOFLAGS=-buildvcs=false go build -trimpath -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb)
  rm -rf "$src"
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
}

start_ferretdb() {
  if port_open "$MONGO_PORT"; then log "MongoDB-wire server already listening on $MONGO_PORT"; return 0; fi
  build_ferretdb
  mkdir -p "$FERRETDB_DATA"
  log "starting FerretDB on 127.0.0.1:$MONGO_PORT (data in $FERRETDB_DATA)"
  nohup "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$FERRETDB_DATA/" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --telemetry=disable --log-level=warn \
    --state-dir="$CACHE_DIR" >"$FERRETDB_LOG" 2>&1 </dev/null &
  echo $! >"$FERRETDB_PIDFILE"
  wait_for_port "$MONGO_PORT" 60 || { log "FerretDB did not start; see $FERRETDB_LOG"; return 1; }
  log "FerretDB is up"
}

stop_ferretdb() {
  if [ -f "$FERRETDB_PIDFILE" ] && kill -0 "$(cat "$FERRETDB_PIDFILE")" 2>/dev/null; then
    kill "$(cat "$FERRETDB_PIDFILE")" && rm -f "$FERRETDB_PIDFILE" && log "FerretDB stopped"
  fi
}

stop_rabbitmq() {
  if command -v rabbitmqctl >/dev/null 2>&1 && as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    as_root rabbitmqctl -q shutdown >/dev/null 2>&1 || as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
    log "RabbitMQ stopped"
  fi
}

use_docker() {
  [ "${PW_SERVICES:-native}" = docker ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

print_env() {
  echo "AMQP_URL=$AMQP_URL_SERVED"
  echo "MONGODB_URL=$MONGODB_URL_SERVED"
}

case "${1:-}" in
  start)
    if use_docker; then
      docker compose -f "$(dirname "$0")/../docker-compose.yml" up -d rabbitmq mongodb
      wait_for_port "$AMQP_PORT" 120 && wait_for_port "$MONGO_PORT" 120
    else
      start_rabbitmq
      start_ferretdb
    fi
    print_env
    ;;
  stop)
    if use_docker; then docker compose -f "$(dirname "$0")/../docker-compose.yml" down; else stop_ferretdb; stop_rabbitmq; fi
    ;;
  status)
    port_open "$AMQP_PORT" && echo "rabbitmq: up ($AMQP_URL_SERVED)" || echo "rabbitmq: down"
    port_open "$MONGO_PORT" && echo "mongodb-wire: up ($MONGODB_URL_SERVED)" || echo "mongodb-wire: down"
    ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
