#!/usr/bin/env bash
# A RabbitMQ cluster on this machine, for tests and operators (issue 17): N nodes (default 3)
# from Debian's rabbitmq-server package, each in a network namespace of its own.
#
# Why namespaces: to cut a node off for real. Node n runs in namespace pw-rabbit-<n> with the
# address 10.77.0.<n> (the project's own test addresses: a /24 on a bridge of this machine,
# routed nowhere else); the nodes, and the workers in the root namespace, reach each other only
# through the bridge pw-rabbit0 (10.77.0.254). `isolate n` takes node n's link off the bridge:
# every packet between it and the other nodes and the workers is dropped, in both directions,
# while the node itself keeps running (as a partitioned node does); `heal n` puts it back.
# Loopback rules per port could not do this here: the machine has neither iptables nor nft,
# and the nodes' own connections to each other leave from ephemeral ports.
#
# Each node has the standard ports inside its namespace (AMQP 5672, management 15672,
# distribution 25672, its own epmd), its own node name rabbit@10.77.0.<n> (long names), and its
# own data under /var/lib/rabbitmq/cluster/<n>; all share the rabbitmq user's Erlang cookie.
# Nodes 2 … N join node 1 (`rabbitmqctl join_cluster`). The default node (127.0.0.1:5672) is
# left alone: the cluster is an addition, opt-in.
#
# Two settings of the nodes' own (written to each node's rabbitmq.conf and advanced.config):
# `cluster_partition_handling = pause_minority`, what RabbitMQ advises for three nodes or more, so
# that a node cut off pauses (closes its clients' connections) and, once healed, rejoins on its own
# instead of leaving two halves that each believe the other gone; and the Erlang distribution's
# `net_ticktime` at 10 s instead of 60, so that the others see a cut-off node gone (and hand its
# consumers' deliveries and its queues' leadership on) within 10-13 s rather than 60-75 s: the
# fault tests would otherwise spend most of their minutes waiting. bench/RESULTS.md gives the
# pauses measured with 10 s (60 s was not measured).
#
# Usage: scripts/rabbitmq-cluster.sh start|stop|status|env|addresses|await-cluster
#        scripts/rabbitmq-cluster.sh node-stop|node-kill|node-start|node-isolate|node-heal N
#        scripts/rabbitmq-cluster.sh node-restart N
# `node-restart` is one step of a rolling restart as operators do it: it waits until every quorum
# queue keeps a majority without node N (`rabbitmq-upgrade await_online_quorum_plus_one`), stops
# the node, starts it again. `await-cluster` waits (at most 120 s) until every node runs its
# application and sees the others: after a heal, a paused node takes a while to resume.
# (scripts/services.sh runs it for PW_RABBITMQ_NODES=3 and passes node-* commands on.)
set -euo pipefail

NODES="${PW_RABBITMQ_NODES:-3}"
SUBNET=10.77.0
BRIDGE=pw-rabbit0
DATA=/var/lib/rabbitmq/cluster
USER_NAME=profile-worker # also its password: a cluster reachable from this machine only

log() { printf '[rabbitmq-cluster] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
namespace() { echo "pw-rabbit-$1"; }
address() { echo "$SUBNET.$1"; }
node_name() { echo "rabbit@$(address "$1")"; }
link() { echo "pw-rabbit-v$1"; }
in_namespace() { local n=$1; shift; as_root ip netns exec "$(namespace "$n")" "$@"; }
ctl() { local n=$1; shift; in_namespace "$n" rabbitmqctl --longnames -n "$(node_name "$n")" "$@"; }
upgrade() { local n=$1; shift; in_namespace "$n" rabbitmq-upgrade --longnames -n "$(node_name "$n")" "$@"; }
diagnostics() { local n=$1; shift; in_namespace "$n" rabbitmq-diagnostics --longnames -n "$(node_name "$n")" "$@"; }

check_node() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$NODES" ] && return 0
  log "a node number from 1 to $NODES is needed, not '${1:-}'"
  exit 2
}

setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    as_root ip link add "$BRIDGE" type bridge
    as_root ip addr add "$SUBNET.254/24" dev "$BRIDGE"
  fi
  as_root ip link set "$BRIDGE" up
  local n
  for ((n = 1; n <= NODES; n++)); do
    ip netns list | grep -qw "$(namespace "$n")" || as_root ip netns add "$(namespace "$n")"
    if ! ip link show "$(link "$n")" >/dev/null 2>&1; then
      as_root ip link add "$(link "$n")" type veth peer name eth0 netns "$(namespace "$n")"
      as_root ip link set "$(link "$n")" master "$BRIDGE"
      in_namespace "$n" ip addr add "$(address "$n")/24" dev eth0
    fi
    as_root ip link set "$(link "$n")" up
    in_namespace "$n" ip link set lo up
    in_namespace "$n" ip link set eth0 up
  done
}

NET_TICKTIME="${PW_RABBITMQ_NET_TICKTIME:-10}"

running() { ctl "$1" -q status >/dev/null 2>&1; }

write_config() {
  local base=$1
  as_root tee "$base/rabbitmq.conf" >/dev/null <<CONF
cluster_partition_handling = pause_minority
CONF
  as_root tee "$base/advanced.config" >/dev/null <<CONF
[{kernel, [{net_ticktime, $NET_TICKTIME}]}].
CONF
}

launch_node() {
  local n=$1 base="$DATA/$1"
  running "$n" && return 0
  as_root mkdir -p "$base"
  write_config "$base"
  as_root chown -R rabbitmq:rabbitmq "$DATA"
  # as scripts/services.sh starts the default node: the rabbitmq user, the hard open-files limit
  # shellcheck disable=SC2016 # expanded by the namespace's root shell
  in_namespace "$n" env NODE="$(node_name "$n")" BASE="$base" sh -c 'limit=$(ulimit -Hn)
    if [ "$limit" = unlimited ] || [ "$limit" -gt 65536 ]; then limit=65536; fi
    ulimit -n "$limit"
    cd /var/lib/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups env HOME=/var/lib/rabbitmq \
      RABBITMQ_NODENAME="$NODE" RABBITMQ_USE_LONGNAME=true \
      RABBITMQ_MNESIA_BASE="$BASE/mnesia" RABBITMQ_LOG_BASE="$BASE/log" \
      RABBITMQ_PID_FILE="$BASE/pid" RABBITMQ_CONFIG_FILE="$BASE/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$BASE/advanced.config" /usr/sbin/rabbitmq-server -detached'
}

await_node() {
  local n=$1 i
  for ((i = 0; i < 30; i++)); do # await_startup can fail before the node has registered
    ctl "$n" -q await_startup --timeout 10 >/dev/null 2>&1 && return 0
    sleep 2
  done
  log "node $n did not start; the end of its log:"
  as_root sh -c "tail -n 25 $DATA/$n/log/*.log" >&2 || true
  return 1
}

start_node() { launch_node "$1" && await_node "$1"; }

join() {
  local n=$1 first
  first=$(node_name 1)
  ctl "$n" -q cluster_status 2>/dev/null | grep -q "$first" && return 0
  ctl "$n" -q stop_app >/dev/null
  ctl "$n" -q join_cluster "$first" >/dev/null
  ctl "$n" -q start_app >/dev/null
}

addresses() {
  local n list=""
  for ((n = 1; n <= NODES; n++)); do
    list+="${list:+,}amqp://$USER_NAME:$USER_NAME@$(address "$n"):5672/?heartbeat=5"
  done
  echo "$list"
}

add_user() {
  # guest logs in from loopback only, and the workers reach the nodes over the bridge: a user
  # of the cluster's own (users, like queues, are shared by every node once joined)
  ctl 1 -q list_users 2>/dev/null | grep -qw "^$USER_NAME" && return 0
  ctl 1 -q add_user "$USER_NAME" "$USER_NAME" >/dev/null
  ctl 1 -q set_permissions -p / "$USER_NAME" ".*" ".*" ".*" >/dev/null
  ctl 1 -q set_user_tags "$USER_NAME" administrator >/dev/null # the management API's owners
}

start() {
  command -v rabbitmq-server >/dev/null 2>&1 || { log "rabbitmq-server is not installed (scripts/services.sh start installs it)"; exit 1; }
  as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  setup_network
  # All nodes are launched before any is awaited: a node that was not the last of the cluster to
  # stop (a machine rebooted, a session's processes ended) boots only once it has loaded the
  # tables from a peer, so awaiting node 1 before launching node 2 would wait for ever.
  local n
  for ((n = 1; n <= NODES; n++)); do launch_node "$n"; done
  for ((n = 1; n <= NODES; n++)); do await_node "$n"; done
  for ((n = 2; n <= NODES; n++)); do join "$n"; done
  add_user
  log "cluster of $NODES nodes up: $(addresses)"
}

stop() {
  local n
  for ((n = 1; n <= NODES; n++)); do
    if ip netns list | grep -qw "$(namespace "$n")"; then stop_node "$n"; fi
  done
  log "cluster stopped (its data stays in $DATA; its namespaces stay)"
}

status() {
  local n
  for ((n = 1; n <= NODES; n++)); do
    local state=down
    if ip netns list | grep -qw "$(namespace "$n")" && running "$n"; then state=up; fi
    if ip link show "$(link "$n")" 2>/dev/null | grep -q "state DOWN"; then state="$state, isolated"; fi
    echo "rabbitmq node $n: $state ($(node_name "$n"), amqp://$(address "$n"):5672/)"
  done
}

node_pid() { as_root cat "$DATA/$1/pid" 2>/dev/null || true; }

stop_node() {
  # `shutdown` can only wait for a node of this host name: the nodes have addresses of their own
  ctl "$1" -q shutdown --no-wait >/dev/null 2>&1 || true
  local i
  for ((i = 0; i < 60; i++)); do running "$1" || return 0; sleep 1; done
  log "node $1 did not stop within 60 s"
  return 1
}

serving() {
  # the application runs (a paused node's does not) and the node sees every other one running
  diagnostics "$1" -q check_running >/dev/null 2>&1 || return 1
  local m
  for ((m = 1; m <= NODES; m++)); do
    ctl "$1" -q cluster_status --formatter json 2>/dev/null | grep -q "\"running_nodes\":\[[^]]*$(node_name "$m")" || return 1
  done
}

await_cluster() {
  local i n
  for ((i = 0; i < 120; i++)); do
    for ((n = 1; n <= NODES; n++)); do serving "$n" || break; done
    [ "$n" -gt "$NODES" ] && return 0
    sleep 1
  done
  log "the cluster did not come together within 120 s:"
  status >&2
  return 1
}

restart_node() {
  upgrade "$1" -q await_online_quorum_plus_one --timeout 120 >/dev/null
  stop_node "$1"
  start_node "$1"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "AMQP_URL=$(addresses)" ;;
  addresses) addresses ;;
  await-cluster) await_cluster ;;
  node-restart) check_node "${2:-}"; restart_node "$2"; log "node $2 restarted" ;;
  node-stop) check_node "${2:-}"; stop_node "$2"; log "node $2 stopped" ;;
  node-kill)
    check_node "${2:-}"
    pid=$(node_pid "$2")
    [ -n "$pid" ] || { log "node $2 has no pid file: not running?"; exit 1; }
    as_root kill -9 "$pid"
    log "node $2 killed (pid $pid)"
    ;;
  node-start) check_node "${2:-}"; setup_network; start_node "$2"; log "node $2 started" ;;
  node-isolate) check_node "${2:-}"; as_root ip link set "$(link "$2")" down; log "node $2 cut off" ;;
  node-heal) check_node "${2:-}"; as_root ip link set "$(link "$2")" up; log "node $2 back on the network" ;;
  *) echo "usage: $0 start|stop|status|env|addresses|await-cluster | node-stop|node-kill|node-start|node-restart|node-isolate|node-heal N" >&2; exit 2 ;;
esac
