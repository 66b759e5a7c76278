#!/usr/bin/env bash
# Brings up the two services profile-worker needs, natively and idempotently:
#   RabbitMQ from Debian's rabbitmq-server package, and FerretDB (MongoDB wire protocol,
#   SQLite handler) built once from the Go module proxy and cached.
# With a reachable Docker engine and PW_SERVICES=docker it uses docker compose instead.
# Usage: scripts/services.sh start|stop [mongo-java-server]|status|env
#        scripts/services.sh node-stop|node-kill|node-start|node-restart|node-isolate|node-heal N
#        scripts/services.sh await-cluster
#
# Opt-in: PW_RABBITMQ_NODES=3 makes `start` also bring up a three-node RabbitMQ cluster, each
# node in a network namespace of its own (scripts/rabbitmq-cluster.sh says how and why); `env`
# then prints the three addresses as AMQP_URL and PW_QUEUE_TYPE=quorum, and the node-* commands
# stop, kill -9, start, cut off and heal one node. The default node stays as it is.
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
#
# Opt-in, for benchmarks: PW_MONGO_SERVER=mongo-java-server makes `start` also bring up
# mongo-java-server 1.47.0 (Java, in-memory backend) on 127.0.0.1:${PW_MJS_PORT:-27018}, beside
# FerretDB, which keeps 27017 and MONGODB_URL (the tests use it). Its jars come from Maven
# Central through `mvn dependency:copy-dependencies` and the launcher
# (scripts/mongo-java-server/Launcher.java, which reports MongoDB 5.0 / wire version 13: the
# library's own default, wire version 8, is refused by PyMongo >= 4.14) is compiled with javac,
# both once, into $CACHE_DIR/mongo-java-server. `env` then also prints PW_BENCH_MONGODB_URL, for
# `python -m bench.run --mongodb-url ...`. `stop` stops it with the rest; `stop mongo-java-server`
# stops only it. Its data is in memory only: gone when it stops. PW_MJS_JAVA_OPTS sets the JVM's
# options (default -Xmx4g). Log: $CACHE_DIR/mongo-java-server.log.
# Known limits of mongo-java-server 1.47.0, checked with PyMongo 4.20 (its semantics are its own,
# like FerretDB's; figures for 50 000 small documents):
#   - no `explain` command (CommandNotFound), so no query plans to inspect; no `hello` command
#     either (PyMongo does not need it: the server sends no helloOk, so it keeps isMaster);
#   - an index serves a filter only when the filter is exactly equality or `$in` on all the
#     keys of `_id` or of a unique index (a dotted path such as fields.loyalty_id included:
#     `$in` of 256 values ≈ 8 ms). Anything else scans the collection: one more condition
#     (`{_id: {$in: ids}, db_id: 10}`), ranges, a prefix of a compound index, and keys with
#     only a non-unique index or none (a dotted-path `$in` then too); a scanning `$in` costs
#     documents × values (256 values ≈ 1 s, against ≈ 6 ms on `_id` alone);
#   - no `$count` accumulator in `$group` ("unknown group operator"; `$sum: 1` works, and so
#     does the `$count` stage); `$group` computes every accumulator (unlike FerretDB 1.24);
#   - no sessions, hence no transactions; TTL indexes are accepted but nothing expires;
#   - every failed command is logged with its stack trace (even a `drop` of a missing
#     collection), so the log grows with errors.
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
MONGO_SERVER="${PW_MONGO_SERVER:-ferretdb}" # ferretdb, or mongo-java-server (also started)
RABBITMQ_NODES="${PW_RABBITMQ_NODES:-1}" # 1: the default node only; 3: and a cluster beside it
CLUSTER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rabbitmq-cluster.sh"
MJS_VERSION=1.47.0
MJS_SLF4J_VERSION=2.0.17 # the slf4j-api mongo-java-server 1.47.0 depends on; simple provider
MJS_PORT="${PW_MJS_PORT:-27018}"
MJS_JAVA_OPTS="${PW_MJS_JAVA_OPTS:--Xmx4g}"
MJS_DIR="$CACHE_DIR/mongo-java-server"
MJS_LIB="$MJS_DIR/lib-$MJS_VERSION"
MJS_CLASSES="$MJS_DIR/classes"
MJS_SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mongo-java-server/Launcher.java"
MJS_PIDFILE="$CACHE_DIR/mongo-java-server.pid"
MJS_LOG="$CACHE_DIR/mongo-java-server.log"
MJS_POM="<project xmlns=\"http://maven.apache.org/POM/4.0.0\">
  <!-- written by scripts/services.sh: the runtime jars of mongo-java-server -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.profile-worker</groupId>
  <artifactId>mongo-java-server-runtime</artifactId>
  <version>$MJS_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>de.bwaldvogel</groupId>
      <artifactId>mongo-java-server</artifactId>
      <version>$MJS_VERSION</version>
    </dependency>
    <dependency>
      <groupId>de.bwaldvogel</groupId>
      <artifactId>mongo-java-server-memory-backend</artifactId>
      <version>$MJS_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>$MJS_SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>"
AMQP_URL_SERVED="amqp://guest:guest@127.0.0.1:${AMQP_PORT}/"
MONGODB_URL_SERVED="mongodb://127.0.0.1:${MONGO_PORT}/"
MJS_URL_SERVED="mongodb://127.0.0.1:${MJS_PORT}/"

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
  as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  if ! as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "starting RabbitMQ"
    start_rabbitmq_node
  fi
  # await_startup can fail before the node has registered: retry in a bounded loop.
  local i
  for ((i = 0; i < 30; i++)); do
    if as_root rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; then
      wait_for_port "$AMQP_PORT" 30 && { log "RabbitMQ is up"; return 0; }
    fi
    sleep 2
  done
  log "RabbitMQ did not start; the end of its logs:"
  as_root sh -c 'tail -n 25 /var/log/rabbitmq/startup_err /var/log/rabbitmq/rabbit@*.log' >&2 || true
  return 1
}

# Debian's wrapper starts the node as root through `su`, whose pam_limits sets the open-files
# soft limit back to 1024. A node recovering more durable queues than that (left by interrupted
# runs, say) then never finishes booting. So the node is started as the rabbitmq user with
# setpriv, keeping the hard limit (capped at 65536), as a systemd unit's LimitNOFILE would.
start_rabbitmq_node() {
  # shellcheck disable=SC2016 # expanded by the root shell
  as_root sh -c 'limit=$(ulimit -Hn)
    if [ "$limit" = unlimited ] || [ "$limit" -gt 65536 ]; then limit=65536; fi
    ulimit -n "$limit"
    cd /var/lib/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
      env HOME=/var/lib/rabbitmq /usr/sbin/rabbitmq-server -detached'
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
  # --log-level=error: at warn it dumps every command it lacks in many lines, and PyMongo sends
  # one (endSessions) each time a client closes.
  nohup "$FERRETDB_BIN" "${backend_args[@]}" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --telemetry=disable --log-level=error \
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

install_java_tools() {
  command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return 0
  log "installing a JDK and Maven from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless maven >/dev/null
}

build_mongo_java_server() { # jars once per version; the launcher again whenever its source changes
  install_java_tools
  mkdir -p "$MJS_DIR"
  if [ ! -f "$MJS_LIB/.complete" ]; then
    log "fetching mongo-java-server $MJS_VERSION and its dependencies from Maven Central (once; cached in $MJS_DIR)"
    printf '%s\n' "$MJS_POM" >"$MJS_DIR/pom.xml"
    rm -rf "$MJS_LIB.tmp"
    mvn -B -f "$MJS_DIR/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$MJS_LIB.tmp" >"$MJS_DIR/mvn.log" 2>&1 ||
      { tail -n 30 "$MJS_DIR/mvn.log" >&2; log "could not fetch mongo-java-server's jars (log: $MJS_DIR/mvn.log)"; return 1; }
    rm -rf "$MJS_LIB" && mv "$MJS_LIB.tmp" "$MJS_LIB" && touch "$MJS_LIB/.complete"
  fi
  local digest
  digest=$(sha256sum "$MJS_SOURCE" | cut -d' ' -f1)
  if [ "$(cat "$MJS_CLASSES/.source-sha256" 2>/dev/null)" != "$digest" ]; then
    log "compiling $MJS_SOURCE"
    rm -rf "$MJS_CLASSES.tmp" && mkdir -p "$MJS_CLASSES.tmp"
    javac -nowarn -d "$MJS_CLASSES.tmp" -cp "$MJS_LIB/*" "$MJS_SOURCE"
    echo "$digest" >"$MJS_CLASSES.tmp/.source-sha256"
    rm -rf "$MJS_CLASSES" && mv "$MJS_CLASSES.tmp" "$MJS_CLASSES"
  fi
}

running_mongo_java_server() { # the pid of the mongo-java-server this script started, if it runs
  local pid
  [ -f "$MJS_PIDFILE" ] && pid=$(cat "$MJS_PIDFILE") && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' Launcher ' && echo "$pid"
  return 0
}

start_mongo_java_server() {
  if port_open "$MJS_PORT"; then
    if [ -n "$(running_mongo_java_server)" ]; then
      log "mongo-java-server already running on 127.0.0.1:$MJS_PORT"; return 0
    fi
    log "port $MJS_PORT is taken by another server; choose another with PW_MJS_PORT"; return 1
  fi
  build_mongo_java_server
  log "starting mongo-java-server $MJS_VERSION on 127.0.0.1:$MJS_PORT (in-memory backend)"
  # shellcheck disable=SC2086 # the JVM options are a list on purpose
  nohup java $MJS_JAVA_OPTS -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$MJS_CLASSES:$MJS_LIB/*" Launcher 127.0.0.1 "$MJS_PORT" \
    >"$MJS_LOG" 2>&1 </dev/null &
  echo $! >"$MJS_PIDFILE"
  wait_for_port "$MJS_PORT" 60 || { log "mongo-java-server did not start; see $MJS_LOG"; return 1; }
  log "mongo-java-server is up ($MJS_URL_SERVED)"
}

stop_mongo_java_server() {
  local pid i
  pid=$(running_mongo_java_server)
  if [ -n "$pid" ]; then
    kill "$pid"
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    log "mongo-java-server stopped"
  fi
  rm -f "$MJS_PIDFILE"
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
  if [ "$RABBITMQ_NODES" -gt 1 ]; then
    "$CLUSTER" env
    echo "PW_QUEUE_TYPE=quorum"
  else
    echo "AMQP_URL=$AMQP_URL_SERVED"
  fi
  echo "MONGODB_URL=$MONGODB_URL_SERVED"
  if [ "$MONGO_SERVER" = mongo-java-server ]; then echo "PW_BENCH_MONGODB_URL=$MJS_URL_SERVED"; fi
}

case "${1:-}" in
  start)
    case "$FERRETDB_BACKEND" in
      sqlite | postgresql) ;;
      *) log "PW_FERRETDB_BACKEND must be sqlite or postgresql, not '$FERRETDB_BACKEND'"; exit 2 ;;
    esac
    case "$MONGO_SERVER" in
      ferretdb | mongo-java-server) ;;
      *) log "PW_MONGO_SERVER must be ferretdb or mongo-java-server, not '$MONGO_SERVER'"; exit 2 ;;
    esac
    if use_docker; then
      docker compose -f "$(dirname "$0")/../docker-compose.yml" up -d rabbitmq mongodb
      wait_for_port "$AMQP_PORT" 120 && wait_for_port "$MONGO_PORT" 120
    else
      start_rabbitmq
      if [ "$FERRETDB_BACKEND" = postgresql ]; then start_postgresql; fi
      start_ferretdb
    fi
    if [ "$MONGO_SERVER" = mongo-java-server ]; then start_mongo_java_server; fi
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" start; fi
    print_env
    ;;
  stop)
    case "${2:-}" in
      "") ;;
      mongo-java-server) stop_mongo_java_server; exit 0 ;;
      *) echo "usage: $0 stop [mongo-java-server]" >&2; exit 2 ;;
    esac
    stop_mongo_java_server
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" stop; fi
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
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" status; fi
    if [ "$MONGO_SERVER" = mongo-java-server ] || [ -f "$MJS_PIDFILE" ]; then
      if [ -n "$(running_mongo_java_server)" ] && port_open "$MJS_PORT"; then
        echo "mongo-java-server: up ($MJS_URL_SERVED)"
      else
        echo "mongo-java-server: down"
      fi
    fi
    ;;
  env) print_env ;;
  node-stop | node-kill | node-start | node-restart | node-isolate | node-heal | await-cluster) "$CLUSTER" "$@" ;;
  *) echo "usage: $0 start|stop [mongo-java-server]|status|env|await-cluster|node-<stop|kill|start|restart|isolate|heal> N" >&2; exit 2 ;;
esac
