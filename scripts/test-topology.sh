#!/usr/bin/env bash
# scripts/test-topology.sh: the Vagrant topology on this one machine, without
# VirtualBox (`make test-topology`, part of `make test`; root only).
#
# Three network namespaces named after the VMs get the VMs' addresses from
# .env on a bridge (the host is .1 of the /24, as with VirtualBox). In each,
# the role runs as on its VM (same .env and role-*.sh, MOVIESTREAM_TOPOLOGY=vms)
# under its own PM2 daemon; only the servers differ: a private PostgreSQL in
# billing-vm and inventory-vm, a private RabbitMQ node in billing-vm, all in a
# temp dir. The checks are the Go test e2e/topology (its package comment lists
# them), run from the host once the stack is up, with the TOPOLOGY_* variables.
#
# Why: the VMs cannot boot here, but everything between them can be checked.
# Cleanup runs in an EXIT trap, also on failure; every wait is bounded; a lock
# serialises runs (the namespace names are fixed). The shared PostgreSQL,
# RabbitMQ and `make up` stack are never touched: every address used is in
# the namespaces, or the host's .1 on the bridge.
# Ends with "topology: N passed, M failed"; exit status 1 on any failure.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

NAMESPACES=(billing-vm inventory-vm gateway-vm)
BRIDGE=msvm-br0
LOCK_FILE=/run/lock/moviestream-test-topology.lock
RABBITMQ_TEST_NODE=moviestream_topology@localhost

require_root
load_env
require_env GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP INVENTORY_DB_PORT BILLING_DB_PORT \
  RABBITMQ_PORT RABBITMQ_MANAGEMENT_PORT

declare -A NS_IP=([gateway-vm]=$GATEWAY_VM_IP [inventory-vm]=$INVENTORY_VM_IP [billing-vm]=$BILLING_VM_IP)
NET=${GATEWAY_VM_IP%.*}
HOST_IP=$NET.1
for ns in "${NAMESPACES[@]}"; do
  [[ ${NS_IP[$ns]} =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && ${NS_IP[$ns]%.*} == "$NET" && ${NS_IP[$ns]} != "$HOST_IP" ]] ||
    die "the three *_VM_IP of .env must share one /24 and not be $HOST_IP (the host's side)"
done

PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[[ -x $PG_BIN/initdb ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/test-setup.sh"
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "rabbitmq-server not found: run scripts/test-setup.sh"
apt_install iproute2 util-linux
for cmd in ip runuser flock timeout pm2 go; do
  command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/test-setup.sh"
done

passed=0 failed=0 tmp=
fw_rule=() rmq_env=()

# in_ns NAMESPACE COMMAND...: run COMMAND inside the namespace, without the
# lock's file descriptor: daemons started there must not keep the lock after
# a killed run.
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@" {lock_fd}>&-
}

# ns_rabbitmqctl ARGS...: rabbitmqctl on billing-vm's private node.
ns_rabbitmqctl() {
  in_ns billing-vm env "${rmq_env[@]}" timeout 60 rabbitmqctl "$@"
}

# remove_network: stop every process left in the namespaces (TERM, KILL
# after 5 s), then delete them, their veths and the bridge.
remove_network() {
  local ns pids round
  for ns in "${NAMESPACES[@]}"; do
    for round in TERM TERM TERM TERM TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null) || break
      [[ -n $pids ]] || break
      # shellcheck disable=SC2086 # one pid per word
      kill -s "$round" $pids 2>/dev/null || true
      sleep 1
    done
    ip netns del "$ns" 2>/dev/null || true
    ip link del "veth-${ns%-vm}" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

cleanup() {
  local rc=$? ns f
  set +e
  trap - EXIT INT TERM
  # A step that stopped the run before the checks counted theirs.
  ((rc == 0 || failed > 0)) || failed=1
  if [[ -n $tmp ]]; then
    if ((failed > 0)); then
      log "logs of the failed run (last 40 lines each):"
      for f in "$tmp"/logs/*.log "$tmp"/pm2/*/logs/*.log "$tmp"/pg/*/server.log "$tmp"/rabbitmq/log/*.log; do
        [[ -s $f ]] && printf '==> %s <==\n%s\n' "${f#"$tmp"/}" "$(tail -n 40 -- "$f")" >&2
      done
    fi
    for ns in "${NAMESPACES[@]}"; do
      [[ -e $tmp/pm2/$ns/pm2.pid ]] &&
        in_ns "$ns" env -i PATH="$PATH" HOME="${HOME:-/root}" PM2_HOME="$tmp/pm2/$ns" timeout 60 pm2 kill >/dev/null 2>&1
      [[ -e $tmp/pg/$ns/data/postmaster.pid ]] &&
        runuser -u postgres -- timeout 60 "$PG_BIN/pg_ctl" -D "$tmp/pg/$ns/data" -m fast -w -t 30 stop >/dev/null 2>&1
    done
    ((${#rmq_env[@]} > 0)) && ns_rabbitmqctl -q stop >/dev/null 2>&1
  fi
  remove_network
  ((${#fw_rule[@]} == 0)) || iptables -D "${fw_rule[@]}" 2>/dev/null
  [[ -z $tmp ]] || rm -rf -- "$tmp"
  printf 'topology: %d passed, %d failed\n' "$passed" "$failed"
  ((failed == 0)) || exit 1
  exit 0
}

# --- setup --------------------------------------------------------------------

mkdir -p -- "$(dirname -- "$LOCK_FILE")"
exec {lock_fd}>"$LOCK_FILE"
flock -w 900 "$lock_fd" || die "another test-topology run holds $LOCK_FILE for 15 minutes"

trap cleanup EXIT
trap 'log "interrupted (SIGINT)"; exit 130' INT
trap 'log "interrupted (SIGTERM)"; exit 143' TERM

# Under the lock, leftovers are from a run killed before its trap ran.
remove_network
find /tmp -maxdepth 1 -name 'moviestream-topology.*' -type d -exec rm -rf -- {} + 2>/dev/null || true

if ip -o -4 addr show | awk '{print $2, $4}' | grep -q " ${NET//./\\.}\."; then
  die "this host already has an address in $NET.0/24 (ip -4 addr): the namespaces would clash with it"
fi

tmp=$(mktemp -d /tmp/moviestream-topology.XXXXXX)
chmod 0755 "$tmp" # the postgres and rabbitmq users enter it
mkdir -p "$tmp"/{logs,bin,host,pm2}

# Compile on the host, which reaches the Go module proxy; the namespaces have
# no route out (GOPROXY=off there), and the role scripts' builds hit the cache.
log "compiling the services and the checks (e2e/topology)"
go_build ./services/gateway ./services/inventory ./services/billing
(cd "$REPO_ROOT/e2e" && go test -c -tags topology -o "$tmp/bin/topology.test" ./topology)

log "network: bridge $BRIDGE ($HOST_IP/24), namespaces ${NAMESPACES[*]}"
ip link add "$BRIDGE" type bridge
ip addr add "$HOST_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for ns in "${NAMESPACES[@]}"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "veth-${ns%-vm}" type veth peer name eth1 netns "$ns"
  ip -n "$ns" addr add "${NS_IP[$ns]}/24" dev eth1
  ip -n "$ns" link set eth1 up
  ip link set "veth-${ns%-vm}" master "$BRIDGE" up
done
# With br_netfilter, bridged frames cross the FORWARD chain, which Docker
# and others set to DROP: let this bridge's own traffic through.
if [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]] && command -v iptables >/dev/null; then
  fw_rule=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT)
  iptables -I "${fw_rule[@]}" || fw_rule=()
fi

# start_private_postgres NAMESPACE PORT: initdb into the temp dir as the
# postgres OS user (peer on the unix socket, scram-sha-256 on TCP) and start
# it inside the namespace on localhost:PORT, as Debian's server on the VM.
start_private_postgres() {
  local ns=$1 port=$2 dir=$tmp/pg/$1
  mkdir -p "$dir/run"
  chown -R postgres:postgres "$dir"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --no-locale \
    --auth-local=peer --auth-host=scram-sha-256 >"$tmp/logs/initdb-$ns.log" 2>&1 ||
    die "initdb for $ns failed: see above"
  cat >>"$dir/data/postgresql.conf" <<EOF
# scripts/test-topology.sh: as Debian's server on the VM.
listen_addresses = 'localhost'
port = $port
unix_socket_directories = '$dir/run'
password_encryption = 'scram-sha-256'
EOF
  in_ns "$ns" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    >"$tmp/logs/pg_ctl-$ns.log" 2>&1 || die "PostgreSQL in $ns did not start within 60 s"
  log "PostgreSQL in $ns: localhost:$port, socket $dir/run"
}

# start_private_rabbitmq: a RabbitMQ node of its own inside billing-vm, with
# every file in the temp dir; listeners on all the namespace's addresses and
# the guest user, as RabbitMQ's defaults on a fresh VM (provision-rabbitmq.sh
# deletes guest, as on the VM). The management
# plugin and the listener addresses are left to provision-rabbitmq.sh, which
# writes them into this node's conf.d ($dir/conf.d, named by
# RABBITMQ_CONFIG_FILES, never the host's /etc/rabbitmq/conf.d) and restarts
# the node, as on the VM.
start_private_rabbitmq() {
  local dir=$tmp/rabbitmq
  mkdir -p "$dir/mnesia" "$dir/log" "$dir/conf.d"
  cat >"$dir/rabbitmq.conf" <<EOF
# scripts/test-topology.sh: RabbitMQ's defaults as on billing-vm.
listeners.tcp.default = $RABBITMQ_PORT
management.tcp.port = $RABBITMQ_MANAGEMENT_PORT
EOF
  printf '[].\n' >"$dir/enabled_plugins"
  # Keeps the shared node's /etc/rabbitmq/rabbitmq-env.conf out.
  printf '# scripts/test-topology.sh: no settings from /etc/rabbitmq/rabbitmq-env.conf\n' >"$dir/rabbitmq-env.conf"
  chown -R rabbitmq:rabbitmq "$dir"
  rmq_env=(RABBITMQ_NODENAME="$RABBITMQ_TEST_NODE" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_CONFIG_FILES="$dir/conf.d"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log")
  in_ns billing-vm env "${rmq_env[@]}" HOME=/var/lib/rabbitmq \
    runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server >"$tmp/logs/rabbitmq-server.log" 2>&1 {lock_fd}>&- &
  wait_for 120 quiet ns_rabbitmqctl -q --timeout 20 await_startup ||
    die "RabbitMQ node $RABBITMQ_TEST_NODE in billing-vm did not start within 120 s"
  log "RabbitMQ node $RABBITMQ_TEST_NODE in billing-vm: port $RABBITMQ_PORT"
}

# run_role NAMESPACE ROLE [VAR=VALUE...]: scripts/role-ROLE.sh inside the
# namespace, as Vagrant runs it on the VM.
run_role() {
  local ns=$1 role=$2
  shift 2
  log "running scripts/role-$role.sh in $ns"
  in_ns "$ns" env PM2_HOME="$tmp/pm2/$ns" MOVIESTREAM_TOPOLOGY=vms MOVIESTREAM_HOST_DIR="$tmp/host/$ns" \
    MOVIESTREAM_BIN_DIR="$tmp/bin/$ns" MOVIESTREAM_PM2_STARTUP=no GOPROXY=off \
    "$@" timeout 600 bash "$SCRIPTS_DIR/role-$role.sh" >"$tmp/logs/role-$role.log" 2>&1 {lock_fd}>&- &
  # In the background, so that a signal runs the cleanup at once.
  wait "$!" || die "scripts/role-$role.sh failed in $ns (log below)"
}

start_private_postgres billing-vm "$BILLING_DB_PORT"
start_private_postgres inventory-vm "$INVENTORY_DB_PORT"
start_private_rabbitmq

run_role billing-vm billing "${rmq_env[@]}" \
  MOVIESTREAM_PG_ADMIN_SOCKET="$tmp/pg/billing-vm/run" MOVIESTREAM_PG_ADMIN_PORT="$BILLING_DB_PORT"
run_role inventory-vm inventory \
  MOVIESTREAM_PG_ADMIN_SOCKET="$tmp/pg/inventory-vm/run" MOVIESTREAM_PG_ADMIN_PORT="$INVENTORY_DB_PORT"
run_role gateway-vm gateway

# --- checks -------------------------------------------------------------------

log "checks: e2e/topology, run from the host (go test -v)"
rc=0
TOPOLOGY_GATEWAY_NS=gateway-vm TOPOLOGY_INVENTORY_NS=inventory-vm TOPOLOGY_BILLING_NS=billing-vm \
  TOPOLOGY_PM2_DIR="$tmp/pm2" TOPOLOGY_HOST_ENV_DIR="$tmp/host" \
  TOPOLOGY_RESULT_FILE="$tmp/result" ENV_FILE="${ENV_FILE:-$REPO_ROOT/.env}" \
  "$tmp/bin/topology.test" -test.v -test.timeout 10m {lock_fd}>&- &
wait "$!" || rc=$?
[[ -s $tmp/result ]] && read -r passed failed <"$tmp/result"
# A failure of the test binary itself (build, timeout, crash) counts too.
((rc == 0 || failed > 0)) || failed=1
((failed == 0)) || exit 1
