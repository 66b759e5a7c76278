#!/usr/bin/env bash
# Brings up the two services profile-worker needs, natively and idempotently:
#   RabbitMQ from Debian's rabbitmq-server package, and FerretDB (MongoDB wire protocol,
#   SQLite handler) built once from the Go module proxy and cached.
# With a reachable Docker engine and PW_SERVICES=docker it uses docker compose instead.
# Usage: scripts/services.sh start|stop|status|env
#
# Opt-in, for benchmarks: PW_FERRETDB_BACKEND=postgresql makes `start` also bring up PostgreSQL
# (Debian's package; its own cluster "profile_worker" on 127.0.0.1:${PW_PG_PORT:-5433}, database
# and role "ferretdb", not started at boot) and run the same FerretDB binary with its PostgreSQL
# handler, which pushes simple top-level equality filters (`_id` included; not `$in`, not dotted
# paths) down to PostgreSQL; with the GIN `_id` index added below, `_id` reads and updates stay
# flat as collections grow. Same listen address and MONGODB_URL; separate data (the SQLite files
# are untouched). For each backend the MongoDB-wire semantics are FerretDB's.
# Only one FerretDB serves 127.0.0.1:27017: `start` refuses (exit 1, with a message) when the
# FerretDB it started earlier runs the other backend; switch with `stop`, then `start`.
# `stop` stops FerretDB whatever its backend, and the PostgreSQL cluster too if it is running.
# `status` adds the FerretDB backend and PostgreSQL's state once the cluster exists.
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
CACHE_DIR="${PROFILE_WORKER_CACHE:-$HOME/.cache/profile-worker}"
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION"
FERRETDB_DATA="$CACHE_DIR/ferretdb-data"
FERRETDB_PIDFILE="$CACHE_DIR/ferretdb.pid"
FERRETDB_LOG="$CACHE_DIR/ferretdb.log"
MONGO_PORT="${PW_MONGO_PORT:-27017}"
AMQP_PORT=5672
FERRETDB_BACKEND="${PW_FERRETDB_BACKEND:-sqlite}"
PG_CLUSTER=profile_worker
PG_PORT="${PW_PG_PORT:-5433}"
PG_DATABASE=ferretdb # also the role's name and password: a loopback-only benchmark cluster
# FerretDB 1.24 keeps one PostgreSQL connection per update of an existing document until the
# whole `update` command ends (a deferred iterator close in its loop), so a bulk of more updates
# than its pool holds (50 by default) waits forever. The worker's bulks hold up to 256 updates.
PG_POOL_MAX_CONNS=600
# FerretDB filters `_id` as `_jsonb->$1 @> $2`, which its btree `_id` index cannot serve, so
# each such read or update scans the table in PostgreSQL. An event trigger gives every table
# FerretDB creates a GIN index on `_jsonb->'_id'` that it can serve (custom plans, forced below,
# substitute the key). PW_PG_ID_INDEX=0 disables the trigger for tables created after that start.
PG_ID_INDEX="${PW_PG_ID_INDEX:-1}"
PG_CONF="# written by scripts/services.sh
listen_addresses = '127.0.0.1'
max_connections = $((PG_POOL_MAX_CONNS + 40))
plan_cache_mode = force_custom_plan"
PG_ID_INDEX_SQL="
CREATE OR REPLACE FUNCTION public.pw_index_ferretdb_ids() RETURNS event_trigger
LANGUAGE plpgsql AS \$\$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.oid::regclass AS rel FROM pg_event_trigger_ddl_commands() d
           JOIN pg_class c ON c.oid = d.objid
           WHERE d.command_tag = 'CREATE TABLE' AND c.relkind = 'r'
             AND c.relname NOT LIKE '\\_ferretdb\\_%'
             AND EXISTS (SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attname = '_jsonb' AND NOT a.attisdropped)
  LOOP
    EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops)', t.rel);
  END LOOP;
END \$\$;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pw_index_ferretdb_ids') THEN
    CREATE EVENT TRIGGER pw_index_ferretdb_ids ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
      EXECUTE FUNCTION public.pw_index_ferretdb_ids();
  END IF;
END \$\$;"
AMQP_URL_SERVED="amqp://guest:guest@127.0.0.1:${AMQP_PORT}/"
MONGODB_URL_SERVED="mongodb://127.0.0.1:${MONGO_PORT}/"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

as_postgres() { # runs from / so that the postgres user need not see the caller's directory
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -u postgres "$@"); fi
}

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

pg_version() { # the newest installed PostgreSQL major version, or nothing
  local bin v=
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$bin" ] || continue
    bin=${bin#/usr/lib/postgresql/} && bin=${bin%%/*}
    if [ -z "$v" ] || [ "$bin" -gt "$v" ] 2>/dev/null; then v=$bin; fi
  done
  echo "$v"
}

pg_cluster_exists() { local v; v=$(pg_version); [ -n "$v" ] && [ -f "/etc/postgresql/$v/$PG_CLUSTER/postgresql.conf" ]; }

pg_cluster_port() { pg_conftool -s "$(pg_version)" "$PG_CLUSTER" show port; }

install_postgresql() {
  command -v pg_createcluster >/dev/null 2>&1 && [ -x "/usr/lib/postgresql/$(pg_version)/bin/postgres" ] && return 0
  log "installing postgresql from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

start_postgresql() {
  install_postgresql
  local v port
  v=$(pg_version)
  if ! pg_cluster_exists; then
    log "creating PostgreSQL $v cluster $PG_CLUSTER (127.0.0.1:$PG_PORT, not started at boot)"
    as_root pg_createcluster --start-conf=manual -p "$PG_PORT" "$v" "$PG_CLUSTER" >/dev/null
  fi
  # settings in a conf.d file (pg_createcluster -o would leave 127.0.0.1 unquoted); a changed
  # file takes effect by a restart
  local conf="/etc/postgresql/$v/$PG_CLUSTER/conf.d/profile-worker.conf"
  if [ "$(cat "$conf" 2>/dev/null)" != "$PG_CONF" ]; then
    if as_root pg_ctlcluster "$v" "$PG_CLUSTER" status >/dev/null 2>&1 &&
      port_open "$MONGO_PORT" && [ "$(running_ferretdb_backend)" = postgresql ]; then
      log "PostgreSQL's settings changed: run '$0 stop' first, then start again"; return 1
    fi
    printf '%s\n' "$PG_CONF" | as_root tee "$conf" >/dev/null
    if as_root pg_ctlcluster "$v" "$PG_CLUSTER" status >/dev/null 2>&1; then
      log "restarting PostgreSQL for its changed settings"
      as_root pg_ctlcluster "$v" "$PG_CLUSTER" restart -- -t 60
    fi
  fi
  if ! as_root pg_ctlcluster "$v" "$PG_CLUSTER" status >/dev/null 2>&1; then
    [ "$(pg_cluster_port)" = "$PG_PORT" ] || as_root pg_conftool "$v" "$PG_CLUSTER" set port "$PG_PORT"
    if port_open "$PG_PORT"; then log "port $PG_PORT is taken by another server; choose another with PW_PG_PORT"; return 1; fi
    log "starting PostgreSQL $v cluster $PG_CLUSTER"
    as_root pg_ctlcluster "$v" "$PG_CLUSTER" start -- -t 60 # pg_ctl waits for it, at most 60 s
  fi
  port=$(pg_cluster_port)
  wait_for_port "$port" 60 || { log "PostgreSQL did not start; see pg_lsclusters and its log"; return 1; }
  if [ "$(as_postgres psql -X -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_DATABASE'")" != 1 ]; then
    as_postgres psql -X -q -p "$port" -c "CREATE ROLE $PG_DATABASE LOGIN PASSWORD '$PG_DATABASE'"
  fi
  if [ "$(as_postgres psql -X -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" != 1 ]; then
    as_postgres createdb -p "$port" -O "$PG_DATABASE" "$PG_DATABASE"
  fi
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d "$PG_DATABASE" -c "$PG_ID_INDEX_SQL" \
    -c "ALTER EVENT TRIGGER pw_index_ferretdb_ids $([ "$PG_ID_INDEX" = 0 ] && echo DISABLE || echo ENABLE)"
  log "PostgreSQL is up (127.0.0.1:$port, database $PG_DATABASE)"
}

stop_postgresql() {
  command -v pg_ctlcluster >/dev/null 2>&1 && pg_cluster_exists || return 0
  if as_root pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" status >/dev/null 2>&1; then
    as_root pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" stop -m fast && log "PostgreSQL stopped"
  fi
}

running_ferretdb_backend() { # the --handler of the FerretDB this script started, if it still runs
  local pid
  [ -f "$FERRETDB_PIDFILE" ] && pid=$(cat "$FERRETDB_PIDFILE") && kill -0 "$pid" 2>/dev/null || return 0
  { tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's/^--handler=//p'; } 2>/dev/null || true
}

start_ferretdb() {
  if port_open "$MONGO_PORT"; then
    local running
    running=$(running_ferretdb_backend)
    if [ -n "$running" ] && [ "$running" != "$FERRETDB_BACKEND" ]; then
      log "FerretDB on 127.0.0.1:$MONGO_PORT runs the $running backend, not $FERRETDB_BACKEND;" \
        "run '$0 stop' first, then start again"
      return 1
    fi
    log "MongoDB-wire server already listening on $MONGO_PORT"; return 0
  fi
  build_ferretdb
  local backend_args
  if [ "$FERRETDB_BACKEND" = postgresql ]; then
    local port
    port=$(pg_cluster_port)
    backend_args=(--handler=postgresql
      --postgresql-url="postgres://$PG_DATABASE:$PG_DATABASE@127.0.0.1:$port/$PG_DATABASE?pool_max_conns=$PG_POOL_MAX_CONNS")
    log "starting FerretDB on 127.0.0.1:$MONGO_PORT (PostgreSQL handler, database $PG_DATABASE on 127.0.0.1:$port)"
  else
    mkdir -p "$FERRETDB_DATA"
    backend_args=(--handler=sqlite --sqlite-url="file:$FERRETDB_DATA/")
    log "starting FerretDB on 127.0.0.1:$MONGO_PORT (data in $FERRETDB_DATA)"
  fi
  nohup "$FERRETDB_BIN" "${backend_args[@]}" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --telemetry=disable --log-level=warn \
    --state-dir="$CACHE_DIR" >"$FERRETDB_LOG" 2>&1 </dev/null &
  echo $! >"$FERRETDB_PIDFILE"
  wait_for_port "$MONGO_PORT" 60 || { log "FerretDB did not start; see $FERRETDB_LOG"; return 1; }
  log "FerretDB is up"
}

stop_ferretdb() {
  local pid i
  if [ -f "$FERRETDB_PIDFILE" ] && pid=$(cat "$FERRETDB_PIDFILE") && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" && rm -f "$FERRETDB_PIDFILE"
    # wait (bounded) until it has exited, so that a `start` right after finds the port free
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    log "FerretDB stopped"
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
    case "$FERRETDB_BACKEND" in
      sqlite | postgresql) ;;
      *) log "PW_FERRETDB_BACKEND must be sqlite or postgresql, not '$FERRETDB_BACKEND'"; exit 2 ;;
    esac
    if use_docker; then
      docker compose -f "$(dirname "$0")/../docker-compose.yml" up -d rabbitmq mongodb
      wait_for_port "$AMQP_PORT" 120 && wait_for_port "$MONGO_PORT" 120
    else
      start_rabbitmq
      if [ "$FERRETDB_BACKEND" = postgresql ]; then start_postgresql; fi
      start_ferretdb
    fi
    print_env
    ;;
  stop)
    if use_docker; then docker compose -f "$(dirname "$0")/../docker-compose.yml" down; else stop_ferretdb; stop_postgresql; stop_rabbitmq; fi
    ;;
  status)
    port_open "$AMQP_PORT" && echo "rabbitmq: up ($AMQP_URL_SERVED)" || echo "rabbitmq: down"
    port_open "$MONGO_PORT" && echo "mongodb-wire: up ($MONGODB_URL_SERVED)" || echo "mongodb-wire: down"
    if [ "$FERRETDB_BACKEND" = postgresql ] || pg_cluster_exists; then
      running=$(running_ferretdb_backend)
      echo "ferretdb backend: ${running:-none started by this script}"
      pg_port=$(pg_cluster_port 2>/dev/null || echo "$PG_PORT")
      port_open "$pg_port" && echo "postgresql: up (127.0.0.1:$pg_port, database $PG_DATABASE)" ||
        echo "postgresql: down"
    fi
    ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
