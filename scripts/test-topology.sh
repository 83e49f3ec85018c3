#!/usr/bin/env bash
# scripts/test-topology.sh: the Vagrant topology, tested on this one machine
# without VirtualBox (`make test-topology`, part of `make test`; root only).
#
# Three network namespaces named after the VMs (gateway-vm, inventory-vm,
# billing-vm) get the VMs' addresses from .env on a bridge (one veth pair
# each; the host takes .1 of the /24, as VirtualBox's host-only adapter
# does). Inside them the roles run as on the VMs, from the same .env and the
# same scripts/role-*.sh with MOVIESTREAM_TOPOLOGY=vms:
#   billing-vm    a private RabbitMQ node (own node name, mnesia, logs, config
#                 and enabled-plugins files in a temp dir) and a private
#                 PostgreSQL (initdb in a temp dir as the postgres OS user,
#                 scram on TCP, listening on localhost), then role-billing.sh
#   inventory-vm  a private PostgreSQL, then role-inventory.sh
#   gateway-vm    role-gateway.sh
# Only starting the two servers differs from a VM, where Debian's packaged
# services run: provision-postgres.sh is pointed at the private server by
# MOVIESTREAM_PG_ADMIN_SOCKET, and the RabbitMQ CLI tools at the private node
# by the RABBITMQ_* variables. The apps run under PM2, one daemon per
# namespace (own PM2_HOME, started inside the namespace by the role
# script's first pm2 command) and no boot service: the stop/start step uses
# the very commands of the VM walkthrough (`pm2 stop billing_app`).
#
# From the host (outside the namespaces) it then runs the user's walkthrough
# against the gateway's address: movie CRUD; POST /api/billing -> one row in
# billing's database; billing_app stopped -> POST still 200, the message
# waits in the queue, no row; started -> the row appears; a message
# published through the management HTTP API (what the UI does) becomes a row.
# Isolation: both PostgreSQL servers refuse TCP from the other hosts (and on
# their own private address); guest cannot log in to RabbitMQ from
# gateway-vm (it can on billing-vm's loopback: the control), the application
# user can; no .env secret reaches a PM2 dump or an override file.
#
# Why: the VMs cannot boot here, but everything between them can be checked:
# addresses, overrides, listeners, authentication and the services' own
# behaviour. Cleanup (processes, namespaces, bridge, temp dir) runs in an
# EXIT trap, also on failure; every wait is bounded; a lock serialises runs,
# since the namespace names are fixed. The shared PostgreSQL, RabbitMQ and
# the `make up` stack on this host are never touched: every address used is
# inside the namespaces, and the host's own .1 on the bridge.
# Ends with "topology: N passed, M failed"; exit status 1 on any failure.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

NAMESPACES=(billing-vm inventory-vm gateway-vm)
BRIDGE=msvm-br0
LOCK_FILE=/run/lock/moviestream-test-topology.lock
RABBITMQ_TEST_NODE=moviestream_topology@localhost

# amqp_login HOST PORT: open an AMQP 0-9-1 connection and answer Start with
# PLAIN credentials from AMQP_USER / AMQP_PASSWORD (environment, never the
# command line). Prints "accepted" (the broker sent Tune), "refused" (it
# sent Start, then closed without Tune) or "unreachable".
amqp_login() {
  local LC_ALL=C host=$1 port=$2 user=${AMQP_USER:?} pass=${AMQP_PASSWORD:?} hex len
  # be32 N: N as 4 big-endian bytes.
  be32() {
    printf '%b' "$(printf '\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)))"
  }
  if ! exec 3<>"/dev/tcp/$host/$port"; then
    echo unreachable
    return 0
  fi 2>/dev/null
  len=$((${#user} + ${#pass} + 2))
  {
    printf 'AMQP\x00\x00\x09\x01'
    # Connection.Start-Ok: class 10, method 11, empty client properties,
    # mechanism PLAIN, response "\0user\0password", locale en_US.
    printf '\x01\x00\x00'
    be32 $((4 + 4 + 6 + 4 + len + 6))
    printf '\x00\x0a\x00\x0b\x00\x00\x00\x00\x05PLAIN'
    be32 "$len"
    printf '\x00%s\x00%s' "$user" "$pass"
    printf '\x05en_US\xce'
  } >&3
  hex=$(timeout 5 cat <&3 2>/dev/null | od -An -v -tx1 | tr -d ' \n') || true
  exec 3<&-
  if [[ $hex == *0100000000000c000a001e* ]]; then
    echo accepted
  elif [[ $hex =~ ^010000[0-9a-f]{8}000a000a ]]; then
    echo refused
  else
    echo unreachable
  fi
}

# The namespaces call this script back for the AMQP probe.
if [[ ${1:-} == --amqp-login ]]; then
  amqp_login "$2" "$3"
  exit 0
fi

require_root
load_env
require_env GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP GATEWAY_PORT INVENTORY_PORT \
  INVENTORY_DB_PORT INVENTORY_DB_NAME INVENTORY_DB_USER INVENTORY_DB_PASSWORD \
  BILLING_DB_PORT BILLING_DB_NAME BILLING_DB_USER BILLING_DB_PASSWORD \
  RABBITMQ_PORT RABBITMQ_MANAGEMENT_PORT RABBITMQ_VHOST RABBITMQ_USER RABBITMQ_PASSWORD RABBITMQ_QUEUE

declare -A NS_IP=([gateway-vm]=$GATEWAY_VM_IP [inventory-vm]=$INVENTORY_VM_IP [billing-vm]=$BILLING_VM_IP)
declare -A VETH=([gateway-vm]=veth-gateway [inventory-vm]=veth-inventory [billing-vm]=veth-billing)
NET=${GATEWAY_VM_IP%.*}
HOST_IP=$NET.1
for ns in "${NAMESPACES[@]}"; do
  [[ ${NS_IP[$ns]} =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && ${NS_IP[$ns]%.*} == "$NET" && ${NS_IP[$ns]} != "$HOST_IP" ]] ||
    die "the three *_VM_IP of .env must share one /24 and not be $HOST_IP (the host's side)"
done

PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[[ -x $PG_BIN/initdb ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/test-setup.sh"
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "rabbitmq-server not found: run scripts/test-setup.sh"
apt_install iproute2 jq util-linux
for cmd in ip runuser flock timeout curl jq psql pm2 go; do
  command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/test-setup.sh"
done

# --- bookkeeping -------------------------------------------------------------

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  log "ok: $*"
}
fail() {
  failed=$((failed + 1))
  log "FAIL: $*"
}
# check DESCRIPTION COMMAND...: one assertion.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

tmp=
finished=
fw_rule=()
rmq_env=()

# in_ns NAMESPACE COMMAND...: run COMMAND inside the namespace, without the
# lock's file descriptor: daemons started there must not keep the lock after
# a killed run.
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@" {lock_fd}>&-
}

# ns_pm2 NAMESPACE ARGS...: that namespace's PM2, in a clean environment
# (nothing from .env), as `sudo pm2 ...` on the VM.
ns_pm2() {
  local ns=$1
  shift
  in_ns "$ns" env -i PATH="$PATH" HOME="${HOME:-/root}" PM2_HOME="$tmp/pm2/$ns" timeout 60 pm2 "$@"
}

# ns_rabbitmqctl ARGS...: rabbitmqctl on billing-vm's private node.
ns_rabbitmqctl() {
  in_ns billing-vm env "${rmq_env[@]}" timeout 60 rabbitmqctl "$@"
}

ns_exists() {
  ip netns list | awk -v ns="$1" '$1 == ns { found = 1 } END { exit !found }'
}

kill_namespace_processes() {
  local ns=$1 pids round
  for round in TERM TERM TERM TERM TERM KILL; do
    pids=$(ip netns pids "$ns" 2>/dev/null) || return 0
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086 # one pid per word
    kill -s "$round" $pids 2>/dev/null || true
    sleep 1
  done
}

remove_network() {
  local ns
  for ns in "${NAMESPACES[@]}"; do
    if ns_exists "$ns"; then
      kill_namespace_processes "$ns"
      ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "${VETH[$ns]}" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

dump_logs() {
  local f
  log "logs of the failed run (last 40 lines each):"
  for f in "$tmp"/logs/*.log "$tmp"/pm2/*/logs/*.log "$tmp"/pg/*/server.log "$tmp"/rabbitmq/log/*.log; do
    [[ -s $f ]] || continue
    printf '==> %s <==\n' "${f#"$tmp"/}" >&2
    tail -n 40 -- "$f" >&2
  done
}

cleanup() {
  local rc=$? ns
  set +e
  trap - EXIT INT TERM
  if [[ -n $tmp ]]; then
    if ((rc != 0 || failed > 0)); then dump_logs; fi
    for ns in "${NAMESPACES[@]}"; do
      [[ -e $tmp/pm2/$ns/pm2.pid ]] && ns_pm2 "$ns" kill >/dev/null 2>&1
    done
    for ns in inventory-vm billing-vm; do
      [[ -e $tmp/pg/$ns/data/postmaster.pid ]] &&
        runuser -u postgres -- timeout 60 "$PG_BIN/pg_ctl" -D "$tmp/pg/$ns/data" -m fast -w -t 30 stop >/dev/null 2>&1
    done
    ((${#rmq_env[@]} > 0)) && ns_rabbitmqctl -q stop >/dev/null 2>&1
  fi
  remove_network
  ((${#fw_rule[@]} == 0)) || iptables -D "${fw_rule[@]}" 2>/dev/null
  [[ -z $tmp ]] || rm -rf -- "$tmp"
  if ((rc != 0)) && [[ -z $finished ]]; then
    failed=$((failed + 1)) # the step that stopped the run
  fi
  printf 'topology: %d passed, %d failed\n' "$passed" "$failed"
  ((rc == 0 && failed == 0)) || exit 1
  exit 0
}

# --- setup --------------------------------------------------------------------

mkdir -p -- "$(dirname -- "$LOCK_FILE")"
exec {lock_fd}>"$LOCK_FILE"
flock -w 900 "$lock_fd" || die "another test-topology run holds $LOCK_FILE for 15 minutes"

trap cleanup EXIT
trap 'log "interrupted (SIGINT)"; exit 130' INT
trap 'log "interrupted (SIGTERM)"; exit 143' TERM

# Under the lock nothing else uses these names: leftovers are from a run that
# was killed before its trap could clean up.
for ns in "${NAMESPACES[@]}"; do
  if ns_exists "$ns"; then
    log "removing namespace $ns left by an interrupted run"
  fi
done
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
log "compiling the services"
go_build ./services/gateway ./services/inventory ./services/billing

log "network: bridge $BRIDGE ($HOST_IP/24), namespaces ${NAMESPACES[*]}"
ip link add "$BRIDGE" type bridge
ip addr add "$HOST_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for ns in "${NAMESPACES[@]}"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${VETH[$ns]}" type veth peer name "vp-${ns%-vm}"
  ip link set "vp-${ns%-vm}" netns "$ns"
  ip -n "$ns" link set "vp-${ns%-vm}" name eth1
  ip -n "$ns" addr add "${NS_IP[$ns]}/24" dev eth1
  ip -n "$ns" link set eth1 up
  ip link set "${VETH[$ns]}" master "$BRIDGE"
  ip link set "${VETH[$ns]}" up
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
# guest loopback-only, as RabbitMQ's defaults on the VM. The management
# plugin is left to provision-rabbitmq.sh, which enables it as on the VM.
start_private_rabbitmq() {
  local dir=$tmp/rabbitmq
  mkdir -p "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
# scripts/test-topology.sh: RabbitMQ's defaults as on billing-vm.
listeners.tcp.default = $RABBITMQ_PORT
management.tcp.port = $RABBITMQ_MANAGEMENT_PORT
EOF
  printf '[].\n' >"$dir/enabled_plugins"
  # Keeps the shared node's /etc/rabbitmq/rabbitmq-env.conf out.
  printf '# scripts/test-topology.sh: no settings from /etc/rabbitmq/rabbitmq-env.conf\n' >"$dir/rabbitmq-env.conf"
  chown -R rabbitmq:rabbitmq "$dir"
  rmq_env=(
    RABBITMQ_NODENAME="$RABBITMQ_TEST_NODE"
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$dir/mnesia"
    RABBITMQ_LOG_BASE="$dir/log"
  )
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
  in_ns "$ns" env \
    PM2_HOME="$tmp/pm2/$ns" \
    MOVIESTREAM_TOPOLOGY=vms \
    MOVIESTREAM_HOST_DIR="$tmp/host/$ns" \
    MOVIESTREAM_BIN_DIR="$tmp/bin/$ns" \
    MOVIESTREAM_PM2_STARTUP=no \
    GOPROXY=off \
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

# --- helpers for the checks ----------------------------------------------------

GW="http://$GATEWAY_VM_IP:$GATEWAY_PORT"
MGMT="http://$BILLING_VM_IP:$RABBITMQ_MANAGEMENT_PORT"
run_id=$(date -u +%Y%m%dT%H%M%S)-$$

# http METHOD URL [JSON]: sets status and body.
status=
body=
http() {
  local args=(-sS -o "$tmp/body" -w '%{http_code}' --max-time 20 -X "$1")
  [[ -z ${3:-} ]] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
  status=$(curl "${args[@]}" "$2" 2>>"$tmp/logs/curl.log") || status=000
  body=$(cat "$tmp/body" 2>/dev/null || true)
}

# mgmt METHOD PATH [JSON]: the management HTTP API as the application user
# (credentials to curl as a config file on stdin, never on a command line).
mgmt() {
  local args=(-sS -o "$tmp/body" -w '%{http_code}' --max-time 20 -K - -X "$1")
  [[ -z ${3:-} ]] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
  status=$(jq -rn --arg u "$RABBITMQ_USER:$RABBITMQ_PASSWORD" '"user = \($u | @json)"' |
    curl "${args[@]}" "$MGMT$2" 2>>"$tmp/logs/curl.log") || status=000
  body=$(cat "$tmp/body" 2>/dev/null || true)
}

# billing_sql SQL [VAR=VALUE...]: one value from billing's database, as the
# billing role over TCP on billing-vm's localhost.
billing_sql() {
  local sql=$1 arg
  local -a vars=()
  shift
  for arg in "$@"; do vars+=(-v "$arg"); done
  printf '%s\n' "$sql" | in_ns billing-vm env PGPASSWORD="$BILLING_DB_PASSWORD" PGCONNECT_TIMEOUT=5 \
    timeout 20 psql -X -q -At -v ON_ERROR_STOP=1 "${vars[@]}" -h 127.0.0.1 -p "$BILLING_DB_PORT" \
    -U "$BILLING_DB_USER" -d "$BILLING_DB_NAME"
}

rows_for_message() {
  billing_sql "SELECT count(*) FROM orders WHERE message_id = :'id';" "id=$1"
}
rows_for_user() {
  billing_sql "SELECT count(*) FROM orders WHERE user_id = :'u';" "u=$1"
}
# rows_are N KIND KEY: true when exactly N orders match.
rows_are() {
  [[ $("rows_for_$2" "$3" 2>/dev/null) == "$1" ]]
}

queue_messages() {
  ns_rabbitmqctl -s list_queues -p "$RABBITMQ_VHOST" name messages 2>/dev/null |
    awk -v q="$RABBITMQ_QUEUE" '$1 == q { print $2 }'
}
queue_holds_messages() {
  local n
  n=$(queue_messages)
  [[ $n =~ ^[0-9]+$ ]] && ((n > 0))
}

post_order() {
  local key=$1 user=$2
  status=$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 20 -X POST \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
    --data-binary "{\"user_id\":\"$user\",\"number_of_items\":\"5\",\"total_amount\":\"180\"}" \
    "$GW/api/billing" 2>>"$tmp/logs/curl.log") || status=000
  body=$(cat "$tmp/body" 2>/dev/null || true)
  [[ $status == 200 && $(jq -r .message <<<"$body" 2>/dev/null) == "Message posted" ]]
}

# psql_refused NAMESPACE|host HOST PORT: a TCP connection to PostgreSQL at
# HOST:PORT is refused (not merely rejected by a password check).
psql_refused() {
  local where=$1 out
  local -a cmd=(env PGPASSWORD="$INVENTORY_DB_PASSWORD" PGCONNECT_TIMEOUT=5 timeout 20
    psql -X -At -h "$2" -p "$3" -U "$INVENTORY_DB_USER" -d "$INVENTORY_DB_NAME" -c 'SELECT 1')
  if [[ $where == host ]]; then
    out=$("${cmd[@]}" 2>&1) && return 1
  else
    out=$(in_ns "$where" "${cmd[@]}" 2>&1) && return 1
  fi
  [[ $out == *"onnection refused"* ]] || {
    log "unexpected answer: $out"
    return 1
  }
}

# amqp_from NAMESPACE HOST USER PASSWORD: the AMQP probe's verdict.
amqp_from() {
  in_ns "$1" env AMQP_USER="$3" AMQP_PASSWORD="$4" timeout 20 bash "$SCRIPTS_DIR/test-topology.sh" \
    --amqp-login "$2" "$RABBITMQ_PORT" 2>/dev/null || echo error
}

# --- walkthrough from the host ------------------------------------------------

log "walkthrough against $GW"
http GET "$GW/health"
check "gateway answers /health at $GATEWAY_VM_IP" test "$status" = 200
check "gateway is connected to RabbitMQ on billing-vm (/ready)" wait_http "$GW/ready" 30

title="Topology $run_id"
http POST "$GW/api/movies" "$(jq -cn --arg t "$title" '{title: $t, description: "created through the gateway"}')"
movie_id=$(jq -r '.id // empty' <<<"$body" 2>/dev/null || true)
check "POST /api/movies -> 201 with an id" test "$status:${movie_id:+id}" = 201:id
http GET "$GW/api/movies/$movie_id"
check "GET /api/movies/{id} -> 200, same title" test "$status:$(jq -r .title <<<"$body" 2>/dev/null)" = "200:$title"
http PUT "$GW/api/movies/$movie_id" "$(jq -cn --arg t "$title (edited)" '{title: $t}')"
check "PUT /api/movies/{id} -> 200, new title" test "$status:$(jq -r .title <<<"$body" 2>/dev/null)" = "200:$title (edited)"
http GET "$GW/api/movies?title=$run_id"
check "GET /api/movies?title= finds it" test "$status:$(jq length <<<"$body" 2>/dev/null)" = 200:1
http DELETE "$GW/api/movies/$movie_id"
check "DELETE /api/movies/{id} -> 200" test "$status" = 200
http GET "$GW/api/movies/$movie_id"
check "GET after DELETE -> 404" test "$status" = 404

key1="topology-$run_id-1"
check "POST /api/billing -> 200 Message posted" post_order "$key1" "topology-user"
check "the order becomes one row in billing_db" wait_for 30 rows_are 1 message "$key1"

# pm2_apps NAMESPACE: the names of the apps online in that namespace's PM2.
pm2_apps() {
  ns_pm2 "$1" jlist 2>/dev/null | jq -r '[.[] | select(.pm2_env.status == "online") | .name] | sort | join(",")'
}
check "each namespace's PM2 runs its own app only" test \
  "$(pm2_apps gateway-vm) $(pm2_apps inventory-vm) $(pm2_apps billing-vm)" = "gateway_app inventory_app billing_app"

log "pm2 stop billing_app (billing-vm)"
check "pm2 stop billing_app" quiet ns_pm2 billing-vm stop billing_app
key2="topology-$run_id-2"
check "billing stopped: POST /api/billing still 200" post_order "$key2" "topology-user"
check "billing stopped: the message waits in $RABBITMQ_QUEUE" wait_for 30 queue_holds_messages
check "billing stopped: no row yet" rows_are 0 message "$key2"
log "pm2 start billing_app (billing-vm)"
check "pm2 start billing_app" quiet ns_pm2 billing-vm start billing_app
check "billing started: the waiting order becomes its row" wait_for 60 rows_are 1 message "$key2"

ui_user="ui-$run_id"
publish=$(jq -cn --arg q "$RABBITMQ_QUEUE" --arg u "$ui_user" '{
  properties: {delivery_mode: 2, content_type: "application/json"},
  routing_key: $q,
  payload: ({user_id: $u, number_of_items: "2", total_amount: "19.90"} | tojson),
  payload_encoding: "string"}')
mgmt POST "/api/exchanges/$(jq -rn --arg v "$RABBITMQ_VHOST" '$v | @uri')/amq.default/publish" "$publish"
check "management API publish (as the UI does) -> routed" test "$status:$(jq -r .routed <<<"$body" 2>/dev/null)" = 200:true
check "the published message becomes a row" wait_for 30 rows_are 1 user "$ui_user"

# --- isolation ------------------------------------------------------------------

check "inventory's PostgreSQL answers on its localhost (control)" test \
  "$(in_ns inventory-vm env PGPASSWORD="$INVENTORY_DB_PASSWORD" PGCONNECT_TIMEOUT=5 timeout 20 \
    psql -X -At -h 127.0.0.1 -p "$INVENTORY_DB_PORT" -U "$INVENTORY_DB_USER" -d "$INVENTORY_DB_NAME" \
    -c 'SELECT 1' 2>&1)" = 1
for target in "inventory-vm:$INVENTORY_VM_IP:$INVENTORY_DB_PORT" "billing-vm:$BILLING_VM_IP:$BILLING_DB_PORT"; do
  IFS=: read -r owner addr port <<<"$target"
  for from in gateway-vm host "$owner"; do
    check "$owner's PostgreSQL refuses $from at $addr:$port" psql_refused "$from" "$addr" "$port"
  done
done
check "inventory-vm cannot reach billing's PostgreSQL" psql_refused inventory-vm "$BILLING_VM_IP" "$BILLING_DB_PORT"

# guest keeps RabbitMQ's default loopback-only rule. Its password is set to a
# random value for this private node, so the control login proves that the
# refusal comes from that rule and not from a wrong password.
guest_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$guest_password" | ns_rabbitmqctl -q change_password guest >/dev/null ||
  die "could not set guest's password on the private node"
check "guest logs in on billing-vm's loopback (control)" \
  test "$(amqp_from billing-vm 127.0.0.1 guest "$guest_password")" = accepted
check "guest cannot log in from gateway-vm" \
  test "$(amqp_from gateway-vm "$BILLING_VM_IP" guest "$guest_password")" = refused
guest_refused_logged() {
  grep -qs "user 'guest' can only connect via localhost" "$tmp"/rabbitmq/log/*.log
}
check "the broker logs: guest can only connect via localhost" wait_for 10 guest_refused_logged
check "$RABBITMQ_USER logs in from gateway-vm" \
  test "$(amqp_from gateway-vm "$BILLING_VM_IP" "$RABBITMQ_USER" "$RABBITMQ_PASSWORD")" = accepted

# --- configuration hygiene --------------------------------------------------------

no_secret_in() {
  local key file
  for key in INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD RABBITMQ_PASSWORD; do
    for file in "$@"; do
      if [[ -e $file ]] && grep -qF -- "${!key}" "$file"; then
        log "$file contains the value of $key"
        return 1
      fi
    done
  done
}
check "gateway-vm's override file points at the other VMs" grep -qx "RABBITMQ_HOST=$BILLING_VM_IP" \
  "$tmp/host/gateway-vm/gateway.env"
check "no .env secret in the override files or PM2 dumps" \
  no_secret_in "$tmp"/host/*/*.env "$tmp"/pm2/*/dump.pm2

finished=1
((failed == 0)) || exit 1
