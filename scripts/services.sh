#!/usr/bin/env bash
# Brings up the two services profile-worker needs, natively and idempotently:
#   - RabbitMQ from Debian's rabbitmq-server package, on 127.0.0.1:5672 (AMQP_URL);
#   - mongo-java-server 1.47.0 (Java, in-memory backend), the MongoDB-wire server of the tests,
#     on 127.0.0.1:${PW_MONGO_PORT:-27017} (MONGODB_URL).
# With a reachable Docker engine and PW_SERVICES=docker it runs docker-compose.yml's RabbitMQ 4
# and MongoDB 7 (a one-member replica set) instead, on the same ports.
# Usage: scripts/services.sh start|stop [mongo-java-server]|status|env
#        scripts/services.sh node-stop|node-kill|node-start|node-restart|node-isolate|node-heal N
#        scripts/services.sh await-cluster
#
# Opt-in: PW_RABBITMQ_NODES=3 makes `start` also bring up a three-node RabbitMQ cluster, each
# node in a network namespace of its own (scripts/rabbitmq-cluster.sh says how and why); `env`
# then prints the three addresses as AMQP_URL and PW_QUEUE_TYPE=quorum, and the node-* commands
# stop, kill -9, start, cut off and heal one node. The default node stays as it is.
#
# mongo-java-server: a JDK and Maven come from Debian's packages if missing; the library's jars
# come from Maven Central through `mvn dependency:copy-dependencies`, once per version, and the
# launcher (scripts/mongo-java-server/Launcher.java) is compiled with javac once per change of
# its source, all into $CACHE_DIR/mongo-java-server. The launcher changes three things and not
# what a query or a write means: it reports MongoDB 5.0 / wire version 13 (the library's own
# default, wire version 8, is refused by PyMongo >= 4.14); it refuses any authentication with
# AuthenticationFailed, as MongoDB refuses a user it does not know (the library has no SASL
# commands: CommandNotFound); and a unique index (`_id` first) serves every filter that names
# all of its keys at the top level, the other conditions then tested on the candidates it
# gives, as MongoDB's planner would (stock 1.47.0 scans unless the filter is exactly the index's
# keys: {_id: X, _v: 5, "_fence.ab": {$not: {$gt: 3}}} took 10-15 ms per update at 50 000
# documents, 0.1-0.25 ms with the launcher's planner; bench/RESULTS.md).
# Each collection operation is one synchronized call of the library, so an update's filter and
# its write are isolated from other writes (tests/integration/test_server_guarantees.py).
# Data is in memory only: gone when it stops. PW_MJS_JAVA_OPTS sets the JVM's options (default
# -Xmx4g). Log: $CACHE_DIR/mongo-java-server-<port>.log. `stop mongo-java-server` stops only it.
# Known limits of mongo-java-server 1.47.0, checked with PyMongo 4.20 (its semantics are its own):
#   - no `explain` command (CommandNotFound), so no query plans to inspect; no `hello` command
#     either (PyMongo does not need it: the server sends no helloOk, so it keeps isMaster);
#   - no sessions, hence no transactions and no retryable writes; majority write and read
#     concerns are accepted (one node: they add nothing); TTL indexes are accepted but nothing
#     expires;
#   - non-unique indexes are accepted but never used for lookups. A unique index serves a
#     filter only through equality or `$in` on each of its keys (a dotted path such as
#     fields.loyalty_id included; on a compound index equality only); ranges, `$eq`/`$ne`/
#     `$not` on those keys, a prefix of a compound index, and keys with only a non-unique index
#     or none scan the collection; a scanning `$in` costs documents × values (256 values ≈ 1.2 s
#     at 50 000 documents, against ≈ 5 ms through the `_id` index, a condition beside it or not);
#   - no users: a URL with credentials is refused (AuthenticationFailed, by the launcher);
#   - a bulk insert with duplicate-key errors reports every document sent in nInserted (2 of
#     3 stored, nInserted 3); the writeErrors are right;
#   - no `$count` accumulator in `$group` ("unknown group operator"; `$sum: 1` works, and so
#     does the `$count` stage);
#   - every failed command is logged with its stack trace (even a `drop` of a missing
#     collection), so the log grows with errors.
#
# `stop` also stops what earlier versions of this script started: FerretDB (its pidfile in
# $CACHE_DIR), a mongo-java-server started beside it, and their PostgreSQL cluster
# "profile_worker". `start` refuses, saying by what, when the MongoDB port is taken by a server
# it did not start (a FerretDB left by an older checkout, say).
set -euo pipefail

CACHE_DIR="${PROFILE_WORKER_CACHE:-$HOME/.cache/profile-worker}"
MONGO_PORT="${PW_MONGO_PORT:-27017}"
AMQP_PORT=5672
RABBITMQ_NODES="${PW_RABBITMQ_NODES:-1}" # 1: the default node only; 3: and a cluster beside it
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="$HERE/rabbitmq-cluster.sh"
MJS_VERSION=1.47.0
MJS_SLF4J_VERSION=2.0.17 # the slf4j-api mongo-java-server 1.47.0 depends on; simple provider
MJS_JAVA_OPTS="${PW_MJS_JAVA_OPTS:--Xmx4g}"
MJS_DIR="$CACHE_DIR/mongo-java-server"
MJS_LIB="$MJS_DIR/lib-$MJS_VERSION"
MJS_SOURCE="$HERE/mongo-java-server/Launcher.java"
# classes per launcher source, so that checkouts with different launchers do not recompile over
# one another (or under a running server)
MJS_CLASSES="$MJS_DIR/classes-$(sha256sum "$MJS_SOURCE" | cut -c1-16)"
MJS_PIDFILE="$CACHE_DIR/mongo-java-server-$MONGO_PORT.pid"
MJS_LOG="$CACHE_DIR/mongo-java-server-$MONGO_PORT.log"
# what earlier versions of this script started, for `stop`: pidfile, then what its command
# line holds (a pid reused by another program is left alone)
LEGACY_SERVERS=("$CACHE_DIR/ferretdb.pid ferretdb" "$CACHE_DIR/mongo-java-server.pid Launcher")
LEGACY_PG_CLUSTER=profile_worker
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

install_java_tools() {
  command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return 0
  log "installing a JDK and Maven from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless maven >/dev/null
}

build_mongo_java_server() { # jars once per version; the launcher once per source
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
  if [ ! -f "$MJS_CLASSES/.complete" ]; then
    log "compiling $MJS_SOURCE"
    rm -rf "$MJS_CLASSES.tmp" && mkdir -p "$MJS_CLASSES.tmp"
    javac -nowarn -d "$MJS_CLASSES.tmp" -cp "$MJS_LIB/*" "$MJS_SOURCE"
    touch "$MJS_CLASSES.tmp/.complete"
    rm -rf "$MJS_CLASSES" && mv "$MJS_CLASSES.tmp" "$MJS_CLASSES"
  fi
}

launcher_pid() { # the pid in pidfile $1 if that process still runs a Launcher (of any version)
  local pid
  [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' Launcher ' && echo "$pid"
  return 0
}

port_holder() { # what listens on the port, as ss names it (empty without ss)
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true
}

start_mongo_java_server() {
  local pid
  pid=$(launcher_pid "$MJS_PIDFILE")
  if [ -n "$pid" ] && port_open "$MONGO_PORT"; then
    log "mongo-java-server already running on 127.0.0.1:$MONGO_PORT"
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$MJS_CLASSES:"; then
      log "it runs another version of $MJS_SOURCE: '$0 stop mongo-java-server', then start, to use this one"
    fi
    return 0
  fi
  if port_open "$MONGO_PORT"; then
    local holder legacy
    holder=$(port_holder "$MONGO_PORT") legacy=$(legacy_pids)
    log "127.0.0.1:$MONGO_PORT is taken by another server${holder:+ ($holder)}, not by the" \
      "mongo-java-server this script starts."
    if [ -n "$legacy" ] && grep -qx "$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$holder")" <<<"$legacy"; then
      log "An earlier version of this script started it (FerretDB, or mongo-java-server):" \
        "'$0 stop' stops it (and RabbitMQ), then start again."
    else
      log "Stop that server, or choose another port with PW_MONGO_PORT."
    fi
    return 1
  fi
  build_mongo_java_server
  log "starting mongo-java-server $MJS_VERSION on 127.0.0.1:$MONGO_PORT (in-memory backend)"
  # shellcheck disable=SC2086 # the JVM options are a list on purpose
  nohup java $MJS_JAVA_OPTS -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$MJS_CLASSES:$MJS_LIB/*" Launcher 127.0.0.1 "$MONGO_PORT" \
    >"$MJS_LOG" 2>&1 </dev/null &
  echo $! >"$MJS_PIDFILE"
  wait_for_port "$MONGO_PORT" 60 || { log "mongo-java-server did not start; see $MJS_LOG"; return 1; }
  log "mongo-java-server is up ($MONGODB_URL_SERVED)"
}

stop_pid() { # pid name: SIGTERM, then wait (bounded) until it has exited, so the port is free
  local i
  kill "$1" 2>/dev/null || return 0
  for ((i = 0; i < 40; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.25; done
  log "$2 stopped"
}

stop_mongo_java_server() {
  local pid
  pid=$(launcher_pid "$MJS_PIDFILE")
  if [ -n "$pid" ]; then stop_pid "$pid" mongo-java-server; fi
  rm -f "$MJS_PIDFILE"
}

legacy_pids() { # live servers from the pidfiles that earlier versions of this script wrote
  local entry pid
  for entry in "${LEGACY_SERVERS[@]}"; do
    [ -f "${entry% *}" ] && pid=$(cat "${entry% *}") && kill -0 "$pid" 2>/dev/null &&
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qw "${entry##* }" && echo "$pid"
  done
  return 0
}

stop_legacy() { # FerretDB, the mongo-java-server beside it, their PostgreSQL cluster
  local pid entry cluster
  for pid in $(legacy_pids); do stop_pid "$pid" "a server of an earlier version of this script (pid $pid)"; done
  for entry in "${LEGACY_SERVERS[@]}"; do rm -f "${entry% *}"; done
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  cluster=$(pg_lsclusters -h 2>/dev/null | awk -v n="$LEGACY_PG_CLUSTER" '$2 == n && $4 == "online" { print $1 }')
  if [ -n "$cluster" ]; then
    as_root pg_ctlcluster "$cluster" "$LEGACY_PG_CLUSTER" stop -m fast && log "PostgreSQL cluster $LEGACY_PG_CLUSTER stopped"
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
  if [ "$RABBITMQ_NODES" -gt 1 ]; then
    "$CLUSTER" env
    echo "PW_QUEUE_TYPE=quorum"
  else
    echo "AMQP_URL=$AMQP_URL_SERVED"
  fi
  echo "MONGODB_URL=$MONGODB_URL_SERVED"
}

compose() { docker compose -f "$HERE/../docker-compose.yml" "$@"; }

case "${1:-}" in
  start)
    if use_docker; then
      compose up -d rabbitmq mongodb
      wait_for_port "$AMQP_PORT" 120 && wait_for_port "$MONGO_PORT" 120
    else
      start_rabbitmq
      start_mongo_java_server
    fi
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" start; fi
    print_env
    ;;
  stop)
    case "${2:-}" in
      "") ;;
      mongo-java-server) stop_mongo_java_server; exit 0 ;;
      *) echo "usage: $0 stop [mongo-java-server]" >&2; exit 2 ;;
    esac
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" stop; fi
    if use_docker; then compose down; else stop_mongo_java_server; stop_legacy; stop_rabbitmq; fi
    ;;
  status)
    port_open "$AMQP_PORT" && echo "rabbitmq: up ($AMQP_URL_SERVED)" || echo "rabbitmq: down"
    if ! port_open "$MONGO_PORT"; then
      echo "mongodb-wire: down"
    elif [ -n "$(launcher_pid "$MJS_PIDFILE")" ]; then
      echo "mongodb-wire: up ($MONGODB_URL_SERVED, mongo-java-server)"
    else
      holder=$(port_holder "$MONGO_PORT")
      echo "mongodb-wire: up ($MONGODB_URL_SERVED, not started by this script${holder:+: $holder})"
    fi
    if [ "$RABBITMQ_NODES" -gt 1 ]; then "$CLUSTER" status; fi
    ;;
  env) print_env ;;
  node-stop | node-kill | node-start | node-restart | node-isolate | node-heal | await-cluster) "$CLUSTER" "$@" ;;
  *) echo "usage: $0 start|stop [mongo-java-server]|status|env|await-cluster|node-<stop|kill|start|restart|isolate|heal> N" >&2; exit 2 ;;
esac
