#!/usr/bin/env bash
# scripts/provision-rabbitmq.sh: install RabbitMQ if missing, start it if
# stopped, enable the management plugin and the rabbitmq_prometheus plugin
# (on 127.0.0.1:RABBITMQ_PROMETHEUS_PORT), and create or update, from .env,
# the vhost RABBITMQ_VHOST and one user per client with the least
# permissions it needs on that vhost only (docs/security.md):
#   GATEWAY_RABBITMQ_USER  configure ^Q(\.dlq)?$  write ^amq\.default$  read ^$
#   BILLING_RABBITMQ_USER  configure ^Q(\.dlq)?$  write ^amq\.default$  read ^Q$
#   RABBITMQ_ADMIN_USER    .* .* .*, tag administrator (management UI, DLQ tool)
#   TEST_RABBITMQ_USER     configure ^test\.  write ^(amq\.default|test\..*)$  read ^test\.
# (Q is RABBITMQ_QUEUE), and delete the user guest.
# Why: each service can do only its job (the gateway publishes and cannot
# consume; billing consumes and dead-letters and cannot read the DLQ); .env
# stays the source of truth (running again resets passwords, tags and
# permissions). Queues are declared by the services themselves, not here:
# billing creates them (the gateway may re-declare but not create the main
# queue, which needs read on it).
# RABBITMQ_NODENAME and the other RABBITMQ_* variables of the CLI tools pick
# the node (scripts/test-topology.sh runs a private one).
# The passwords reach rabbitmqctl on stdin, never on a command line.
# Listeners (docs/security.md): AMQP (RABBITMQ_PORT) and the management UI
# (RABBITMQ_MANAGEMENT_PORT) on 127.0.0.1 with everything on one host; with
# one role per host (MOVIESTREAM_TOPOLOGY=vms: billing-vm) AMQP on 127.0.0.1
# plus BILLING_VM_IP, where gateway-vm publishes, and the management UI on
# BILLING_VM_IP, where the host's browser opens it (the plugin takes one TCP
# address); Erlang distribution on the loopback address of the node's host
# name. A running node cannot change them: the script restarts the node when
# they differ (services reconnect by themselves).
#
# Cluster (RABBITMQ_CLUSTER_NODES in .env, node names, the first the seed;
# empty: a single node, as above). Before the node starts, the script
# installs RABBITMQ_ERLANG_COOKIE from .env as the node's Erlang cookie
# (rabbitmq:rabbitmq 0400; written by a shell builtin, never on a command
# line, and kept out of every child's environment), stopping the node first
# when the cookie changes (a running node keeps the one it booted with).
# The node then listens for AMQP on RABBITMQ_NODE_IP too, this host's
# cluster address (per host: the environment, recorded in
# $HOST_ENV_DIR/rabbitmq.env for later runs), and for Erlang distribution
# on that address only (the peers and rabbitmqctl reach it through the node
# name, whose host must resolve to it). A node other than the seed that is
# not yet a member joins the seed (stop_app, join_cluster, start_app), after
# waiting up to MOVIESTREAM_RABBITMQ_JOIN_TIMEOUT seconds (120) for it; a
# member is left as it is. Users, vhost and permissions are the cluster's:
# setting them again on a member changes nothing.
# A private node (RABBITMQ_NODENAME) in a cluster needs
# MOVIESTREAM_RABBITMQ_HOME, its own HOME (its cookie file is there): the
# CLI tools then run as rabbitmq with that HOME, never with the host's
# /var/lib/rabbitmq/.erlang.cookie.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
load_env
require_env RABBITMQ_VHOST RABBITMQ_QUEUE
# The users, each as PREFIX (PREFIX_USER, PREFIX_PASSWORD in .env).
user_keys=(GATEWAY_RABBITMQ BILLING_RABBITMQ RABBITMQ_ADMIN TEST_RABBITMQ)
for k in "${user_keys[@]}"; do
  require_env "${k}_USER" "${k}_PASSWORD"
  pw_var=${k}_PASSWORD
  [[ ${!pw_var} != *$'\n'* ]] || die "$pw_var contains a newline"
done

# The cookie is a secret: read once, then no longer exported, so that no
# child (rabbitmqctl reads a RABBITMQ_ERLANG_COOKIE variable) ever sees it.
cookie=${RABBITMQ_ERLANG_COOKIE:-}
unset RABBITMQ_ERLANG_COOKIE

# The node this script provisions: RABBITMQ_NODENAME (a private node), else
# Debian's rabbit@<short host name>.
this_node=${RABBITMQ_NODENAME:-rabbit@$(hostname -s)}
node_host=${this_node#*@}

# --- cluster settings (checked before anything changes) ----------------------
cluster_nodes=()
node_ip=
if [[ -n ${RABBITMQ_CLUSTER_NODES:-} ]]; then
  IFS=, read -ra cluster_nodes <<<"${RABBITMQ_CLUSTER_NODES// /}"
  for n in "${cluster_nodes[@]}"; do
    # Also what makes a name safe inside the Erlang terms given to eval.
    [[ $n =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] ||
      die "RABBITMQ_CLUSTER_NODES: '$n' is not a node name (name@host, e.g. rabbit@rmq-1)"
  done
  [[ $(printf '%s\n' "${cluster_nodes[@]}" | sort | uniq -d) == "" ]] ||
    die "RABBITMQ_CLUSTER_NODES names a node twice: $RABBITMQ_CLUSTER_NODES"
  printf '%s\n' "${cluster_nodes[@]}" | grep -qxF -- "$this_node" ||
    die "this node, $this_node, is not in RABBITMQ_CLUSTER_NODES ($RABBITMQ_CLUSTER_NODES): run the script on a host named there, or set RABBITMQ_NODENAME"
  [[ -n $cookie ]] ||
    die "RABBITMQ_ERLANG_COOKIE is empty in .env: a cluster (RABBITMQ_CLUSTER_NODES) needs the same cookie on every node; generate one with: openssl rand -hex 32"
  # Its length only, never its value, goes into a message.
  [[ $cookie =~ ^[A-Za-z0-9]{20,255}$ ]] ||
    die "RABBITMQ_ERLANG_COOKIE in .env must be 20 to 255 letters and digits (it has ${#cookie} characters); generate one with: openssl rand -hex 32"

  # This host's cluster address: the environment, else what an earlier
  # run recorded.
  node_ip_file=$HOST_ENV_DIR/rabbitmq.env
  node_ip=${RABBITMQ_NODE_IP:-}
  if [[ -z $node_ip && -r $node_ip_file ]]; then
    node_ip=$(sed -n 's/^RABBITMQ_NODE_IP=//p' "$node_ip_file" | tail -n 1)
  fi
  [[ -n $node_ip ]] ||
    die "RABBITMQ_NODE_IP is not set: give this host's cluster address once, e.g. sudo RABBITMQ_NODE_IP=10.0.0.11 $0 (it is recorded in $node_ip_file)"
  [[ $node_ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "RABBITMQ_NODE_IP=$node_ip: not an IPv4 address"
  [[ $(ip -4 route get "$node_ip" 2>/dev/null) == local* ]] ||
    die "RABBITMQ_NODE_IP=$node_ip is not an address of this host (ip -4 addr)"
  # Distribution listens on node_ip only, and everyone (this host's
  # rabbitmqctl included) finds the node through its name's host.
  resolved=$(getent ahostsv4 "$node_host" | awk 'NR == 1 {print $1}') || resolved=
  [[ $resolved == "$node_ip" ]] ||
    die "the host of node $this_node, $node_host, resolves to ${resolved:-nothing} here, not RABBITMQ_NODE_IP=$node_ip: map every broker's host name to its cluster address on every broker host (/etc/hosts or DNS)"
fi

# A private node's own HOME, where its Erlang cookie is; never the host's.
rmq_home=
rabbit_home=$(getent passwd rabbitmq | cut -d: -f6) || rabbit_home=
if [[ -n ${MOVIESTREAM_RABBITMQ_HOME:-} ]]; then
  [[ -n ${RABBITMQ_NODENAME:-} ]] ||
    die "MOVIESTREAM_RABBITMQ_HOME is for a private node: set RABBITMQ_NODENAME too"
  rmq_home=$(realpath -e -- "$MOVIESTREAM_RABBITMQ_HOME") ||
    die "MOVIESTREAM_RABBITMQ_HOME=$MOVIESTREAM_RABBITMQ_HOME: no such directory"
  [[ -d $rmq_home && $rmq_home != "$(realpath -m -- "${rabbit_home:-/var/lib/rabbitmq}")" ]] ||
    die "MOVIESTREAM_RABBITMQ_HOME=$rmq_home: must be the private node's own directory, not the rabbitmq user's home"
elif [[ -n ${RABBITMQ_NODENAME:-} && ${#cluster_nodes[@]} -gt 0 ]]; then
  die "RABBITMQ_NODENAME=$RABBITMQ_NODENAME in a cluster needs MOVIESTREAM_RABBITMQ_HOME (the node's own HOME, for its Erlang cookie): ${rabbit_home:-/var/lib/rabbitmq}/.erlang.cookie is the host's shared node's"
fi
if [[ -n $rmq_home ]]; then
  # The node and the CLI tools read the cookie from $HOME/.erlang.cookie;
  # Debian's wrappers in /usr/sbin force the rabbitmq user's home. These
  # functions stand for the commands everywhere in this script, lib.sh's
  # start_rabbitmq included: RabbitMQ's own scripts, as rabbitmq, with the
  # private node's HOME.
  rmq_tool() {
    local tool=$1
    shift
    (cd -- "$rmq_home" && runuser -u rabbitmq -- env HOME="$rmq_home" "/usr/lib/rabbitmq/bin/$tool" "$@")
  }
  rabbitmqctl() { rmq_tool rabbitmqctl "$@"; }
  rabbitmq-plugins() { rmq_tool rabbitmq-plugins "$@"; }
  rabbitmq-diagnostics() { rmq_tool rabbitmq-diagnostics "$@"; }
  rabbitmq-server() { rmq_tool rabbitmq-server "$@"; }
fi

apt_install rabbitmq-server curl iproute2

# Where this node reads its conf.d files: RABBITMQ_CONFIG_FILES when set (a
# private node: scripts/test-topology.sh points it at a conf.d directory in
# its temp dir, next to that node's rabbitmq.conf), else Debian's
# /etc/rabbitmq/conf.d. A private node (RABBITMQ_NODENAME set) without it is
# refused, so that nothing for it is ever written to the host's /etc.
if [[ -n ${RABBITMQ_CONFIG_FILES:-} ]]; then
  conf_dir=$RABBITMQ_CONFIG_FILES
  [[ -d $conf_dir ]] || die "RABBITMQ_CONFIG_FILES=$conf_dir: not a directory"
elif [[ -n ${RABBITMQ_NODENAME:-} ]]; then
  die "RABBITMQ_NODENAME=$RABBITMQ_NODENAME without RABBITMQ_CONFIG_FILES: a private node's conf.d would be the host's /etc/rabbitmq/conf.d"
else
  conf_dir=/etc/rabbitmq/conf.d
fi

# Settings checked: record this host's cluster address for later runs
# (role-billing.sh and `make up` run the script without it).
if [[ -n $node_ip && ${RABBITMQ_NODE_IP:-} == "$node_ip" ]] &&
  [[ $(sed -n 's/^RABBITMQ_NODE_IP=//p' "$node_ip_file" 2>/dev/null | tail -n 1) != "$node_ip" ]]; then
  write_host_env rabbitmq "RABBITMQ_NODE_IP=$node_ip"
fi

# Listeners (see the header): written to a conf.d file before the node
# starts, so that a new node boots with them; a running node restarts only
# when what it runs differs (below).
require_env RABBITMQ_PORT RABBITMQ_MANAGEMENT_PORT
amqp_ips=(127.0.0.1) amqp_names=(default) mgmt_ip=127.0.0.1
if [[ $(topology) == vms ]]; then
  require_env BILLING_VM_IP
  amqp_ips+=("$BILLING_VM_IP") amqp_names+=(private)
  mgmt_ip=$BILLING_VM_IP
fi
if [[ -n $node_ip ]] && ! printf '%s\n' "${amqp_ips[@]}" | grep -qxF -- "$node_ip"; then
  amqp_ips+=("$node_ip") amqp_names+=(cluster)
fi
# Distribution (rabbitmqctl's port, 25672): in a cluster on the cluster
# address (checked above to be what the node's host resolves to); else on
# the address the node's host name resolves to, when that is a loopback
# address (127.0.0.1 here, 127.0.1.1 on a Debian VM): the CLI tools resolve
# the same name.
if [[ -n $node_ip ]]; then
  dist_ip=$node_ip
else
  dist_ip=$(getent ahostsv4 "$node_host" | awk 'NR == 1 {print $1}') || dist_ip=
  [[ $dist_ip == 127.* ]] || {
    log "warning: node host $node_host resolves to ${dist_ip:-nothing}, not loopback: Erlang distribution stays on every interface"
    dist_ip=
  }
fi
listen_conf=$conf_dir/80-moviestream-listeners.conf
listen_want=$(
  printf '# Written by scripts/provision-rabbitmq.sh from .env (docs/security.md).\n'
  # "default" replaces the listener of that name in rabbitmq.conf, if any.
  for i in "${!amqp_ips[@]}"; do
    printf 'listeners.tcp.%s = %s:%s\n' "${amqp_names[i]}" "${amqp_ips[i]}" "$RABBITMQ_PORT"
  done
  printf 'management.tcp.ip = %s\nmanagement.tcp.port = %s\n' "$mgmt_ip" "$RABBITMQ_MANAGEMENT_PORT"
  [[ -z $dist_ip ]] || printf 'distribution.listener.interface = %s\n' "$dist_ip"
)
if [[ $(cat -- "$listen_conf" 2>/dev/null) != "$listen_want" ]]; then
  mkdir -p -- "$conf_dir"
  printf '%s\n' "$listen_want" >"$listen_conf"
  chmod 0644 "$listen_conf"
  log "wrote $listen_conf"
fi

node_down() { ! quiet rabbitmqctl status; }

# The Erlang cookie, installed before the node starts. A running node keeps
# the cookie it booted with, and the CLI tools read the file: the node is
# stopped with the old file, then starts with the new one.
if ((${#cluster_nodes[@]} > 0)); then
  cookie_file=${rmq_home:-${rabbit_home:-/var/lib/rabbitmq}}/.erlang.cookie
  cookie_now=
  [[ ! -f $cookie_file ]] || cookie_now=$(<"$cookie_file")
  if [[ $cookie_now != "$cookie" ]]; then
    if ! node_down; then
      log "the Erlang cookie changes: stopping $this_node (a running node cannot change it)"
      rabbitmqctl stop
      wait_for 60 node_down || die "RabbitMQ did not stop within 60 s"
    fi
    cookie_tmp=$(mktemp "$cookie_file.XXXXXX")
    printf '%s' "$cookie" >"$cookie_tmp" # a builtin: the value is on no command line
    chown rabbitmq:rabbitmq "$cookie_tmp"
    chmod 0400 "$cookie_tmp"
    mv -f -- "$cookie_tmp" "$cookie_file"
    log "installed RABBITMQ_ERLANG_COOKIE from .env as $cookie_file (rabbitmq:rabbitmq 0400)"
  elif [[ $(stat -c '%U:%G %a' -- "$cookie_file") != "rabbitmq:rabbitmq 400" ]]; then
    chown rabbitmq:rabbitmq "$cookie_file"
    chmod 0400 "$cookie_file"
    log "$cookie_file: owner and mode set to rabbitmq:rabbitmq 0400"
  fi
fi

# The prometheus plugin's listener (see below), in conf.d before the node
# starts, like the other listeners: the conf.d file keeps it across restarts.
require_env RABBITMQ_PROMETHEUS_PORT
[[ $RABBITMQ_PROMETHEUS_PORT =~ ^[0-9]+$ ]] || die "RABBITMQ_PROMETHEUS_PORT=$RABBITMQ_PROMETHEUS_PORT: not a port number"
prom_conf=$conf_dir/90-moviestream-prometheus.conf
prom_want=$(printf '# Written by scripts/provision-rabbitmq.sh from .env.\nprometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = %s\n' "$RABBITMQ_PROMETHEUS_PORT")
if [[ $(cat -- "$prom_conf" 2>/dev/null) != "$prom_want" ]]; then
  mkdir -p -- "${prom_conf%/*}"
  printf '%s\n' "$prom_want" >"$prom_conf"
  log "wrote $prom_conf"
fi

# A stopped node (a new one) gets its plugins before it boots, rather than
# starting them one by one once it runs.
if node_down; then
  log "enabling rabbitmq_management and rabbitmq_prometheus before the node starts"
  rabbitmq-plugins -q enable --offline rabbitmq_management rabbitmq_prometheus >/dev/null
fi

start_rabbitmq

if quiet rabbitmq-plugins is_enabled rabbitmq_management; then
  log "plugin rabbitmq_management already enabled"
else
  rabbitmq-plugins enable rabbitmq_management
fi

# What the node listens on, from the kernel (ss): the local addresses of
# the AMQP, management and (when dist_ip is set) distribution ports.
# (rabbitmq-diagnostics listeners reports the plugins' HTTP listeners as
# "::" whatever their address.)
dist_port=$(rabbitmq-diagnostics -q listeners | sed -nE 's/.*port: ([0-9]+), protocol: clustering,.*/\1/p' | head -n 1)
[[ -n $dist_port ]] || dist_port=$((RABBITMQ_PORT + 20000))
listen_ports=("$RABBITMQ_PORT" "$RABBITMQ_MANAGEMENT_PORT")
[[ -z $dist_ip ]] || listen_ports+=("$dist_port")
listeners_now() {
  local p
  for p in "${listen_ports[@]}"; do
    ss -ltnH "( sport = :$p )" | awk '{print $4}'
  done | sort -u
}
listeners_want=$(
  for ip in "${amqp_ips[@]}"; do printf '%s:%s\n' "$ip" "$RABBITMQ_PORT"; done
  printf '%s:%s\n' "$mgmt_ip" "$RABBITMQ_MANAGEMENT_PORT"
  [[ -z $dist_ip ]] || printf '%s:%s\n' "$dist_ip" "$dist_port"
)
listeners_want=$(sort -u <<<"$listeners_want")
listeners_ok() { [[ $(listeners_now) == "$listeners_want" ]]; }
if ! listeners_ok; then
  log "listeners differ from $listen_conf (running: $(listeners_now | paste -sd, -)): restarting the node"
  rabbitmqctl stop
  wait_for 60 node_down || die "RabbitMQ did not stop within 60 s"
  start_rabbitmq
  # The plugins' listeners start with the node; give them a moment.
  wait_for 30 listeners_ok ||
    die "after the restart RabbitMQ listens on $(listeners_now | paste -sd, -), want $(paste -sd, - <<<"$listeners_want")"
fi
log "RabbitMQ listens on: $(listeners_now | paste -sd, -)"

# Metrics for Prometheus (scripts/provision-prometheus.sh): the
# rabbitmq_prometheus plugin on 127.0.0.1:RABBITMQ_PROMETHEUS_PORT only (its
# conf.d file is written before the node starts, above); the running node
# gets the same setting before the plugin (re)starts, which never restarts
# the node.
prom_listener=$(rabbitmqctl -q eval 'application:get_env(rabbitmq_prometheus, tcp_config).' 2>/dev/null | tr -d ' \n') || prom_listener=
if quiet rabbitmq-plugins is_enabled rabbitmq_prometheus &&
  [[ $prom_listener == *"{port,$RABBITMQ_PROMETHEUS_PORT}"* && $prom_listener == *'{ip,"127.0.0.1"}'* ]]; then
  log "plugin rabbitmq_prometheus already enabled on 127.0.0.1:$RABBITMQ_PROMETHEUS_PORT"
else
  if quiet rabbitmq-plugins is_enabled rabbitmq_prometheus; then
    log "plugin rabbitmq_prometheus listens elsewhere (${prom_listener:-default}): restarting the plugin"
    rabbitmq-plugins disable rabbitmq_prometheus
  fi
  rabbitmqctl -q eval "application:set_env(rabbitmq_prometheus, tcp_config, [{port, $RABBITMQ_PROMETHEUS_PORT}, {ip, \"127.0.0.1\"}])." >/dev/null
  rabbitmq-plugins enable rabbitmq_prometheus
fi

# --- cluster membership ------------------------------------------------------
# node_list EXPR: the node names an Erlang expression returns, one a line
# (eval prints a list of atoms, quoted when they hold '-' or '.').
node_list() {
  rabbitmqctl -q eval "$1" | tr -d "[]' \n" | tr ',' '\n' | sed '/^$/d'
}
if ((${#cluster_nodes[@]} > 0)); then
  seed=${cluster_nodes[0]}
  join_timeout=${MOVIESTREAM_RABBITMQ_JOIN_TIMEOUT:-120}
  [[ $join_timeout =~ ^[0-9]+$ ]] || die "MOVIESTREAM_RABBITMQ_JOIN_TIMEOUT=$join_timeout: not a number of seconds"
  if [[ $this_node == "$seed" ]]; then
    log "$this_node is the seed of the cluster (first in RABBITMQ_CLUSTER_NODES): nothing to join"
  elif node_list 'rabbit_nodes:all().' | grep -qxF -- "$seed"; then
    log "$this_node is already a member of $seed's cluster"
  else
    # The seed's broker must run, seen from this node: the path join takes.
    seed_up() {
      [[ $(rabbitmqctl -q eval "rpc:call('$seed', rabbit, is_running, [], 5000)." 2>/dev/null) == true ]]
    }
    log "waiting up to ${join_timeout} s for the seed $seed"
    if ! wait_for "$join_timeout" seed_up; then
      # Why, from the CLI's own attempt (its output names the cookie's
      # hash at most, never the cookie).
      why=$(rabbitmqctl -n "$seed" -q --timeout 10 status 2>&1 >/dev/null) || true
      if grep -qiE 'cookie|authentication failed|rejected' <<<"$why"; then
        die "the seed $seed rejects this node's Erlang cookie: RABBITMQ_ERLANG_COOKIE must be the same on every broker host (and the seed provisioned with it)"
      fi
      seed_host=${seed#*@}
      die "the seed $seed does not answer from $this_node within ${join_timeout} s: provision it first; check that $seed_host resolves here (now: $(getent ahostsv4 "$seed_host" | awk 'NR == 1 {print $1}')) and that ports 4369 (epmd) and its distribution port ($((RABBITMQ_PORT + 20000)) by default) are open between the brokers"
    fi
    # join_cluster resets this node: what it holds alone is lost. Users,
    # vhosts and permissions come back from the cluster; messages would not.
    held=0
    mapfile -t own_vhosts < <(rabbitmqctl -q -s list_vhosts name)
    for vh in "${own_vhosts[@]}"; do
      n=$(rabbitmqctl -q -s list_queues -p "$vh" messages | awk '{s += $1} END {print s + 0}')
      held=$((held + n))
    done
    ((held == 0)) ||
      die "$this_node holds $held messages; joining $seed would reset it and lose them: let billing drain them first, or list this node first in RABBITMQ_CLUSTER_NODES (the seed keeps its data)"
    log "joining $this_node to $seed's cluster (stop_app, join_cluster, start_app)"
    rabbitmqctl stop_app
    if ! rabbitmqctl join_cluster "$seed"; then
      rabbitmqctl start_app || true
      die "rabbitmqctl join_cluster $seed failed (message above); $this_node runs alone again"
    fi
    rabbitmqctl start_app
    wait_for 90 quiet rabbitmqctl --timeout 10 await_startup ||
      die "$this_node did not start again within 90 s after joining $seed"
    node_list 'rabbit_nodes:all().' | grep -qxF -- "$seed" ||
      die "$this_node does not list $seed as a member after join_cluster"
  fi
  log "cluster members running: $(node_list 'rabbit_nodes:all_running().' | paste -sd, -)"
fi

vhosts=$(rabbitmqctl -s list_vhosts name)
if grep -qxF -- "$RABBITMQ_VHOST" <<<"$vhosts"; then
  log "vhost $RABBITMQ_VHOST exists"
else
  rabbitmqctl add_vhost "$RABBITMQ_VHOST"
fi

# The queue's name as a regular expression: letters, digits, _ and - stand
# for themselves, dots are escaped; anything else is refused.
[[ $RABBITMQ_QUEUE =~ ^[A-Za-z0-9_.-]+$ ]] || die "RABBITMQ_QUEUE=$RABBITMQ_QUEUE: use letters, digits, '_', '-' and '.' only"
q=${RABBITMQ_QUEUE//./\\.}
# set_user KEY TAGS CONFIGURE WRITE READ: create or update the user of
# KEY_USER / KEY_PASSWORD with these tags and permissions on the vhost.
users=$(rabbitmqctl -s list_users | cut -f1)
set_user() {
  local tags=$2 user_var=${1}_USER pw_var=${1}_PASSWORD
  local user=${!user_var}
  if grep -qxF -- "$user" <<<"$users"; then
    log "user $user exists: setting its password from .env"
    printf '%s\n' "${!pw_var}" | rabbitmqctl change_password "$user" >/dev/null
  else
    printf '%s\n' "${!pw_var}" | rabbitmqctl add_user "$user" >/dev/null
  fi
  # shellcheck disable=SC2086 # no tags: no argument
  rabbitmqctl -q set_user_tags "$user" $tags
  rabbitmqctl -q set_permissions -p "$RABBITMQ_VHOST" "$user" "$3" "$4" "$5"
  log "user $user: tags '${tags}', configure '$3' write '$4' read '$5' on $RABBITMQ_VHOST"
}
set_user GATEWAY_RABBITMQ "" "^$q(\\.dlq)?\$" '^amq\.default$' '^$'
set_user BILLING_RABBITMQ "" "^$q(\\.dlq)?\$" '^amq\.default$' "^$q\$"
set_user RABBITMQ_ADMIN administrator '.*' '.*' '.*'
set_user TEST_RABBITMQ "" '^test\.' '^(amq\.default|test\..*)$' '^test\.'
# Users of .env no longer (a renamed key): left alone, reported.
for u in $users; do
  known=no
  for k in "${user_keys[@]}"; do
    v=${k}_USER
    [[ $u != "${!v}" ]] || known=yes
  done
  [[ $known == yes || $u == guest ]] || log "warning: user $u is not in .env (left as it is)"
done

# guest (password guest, administrator, every vhost) comes with every new
# node: deleted.
if grep -qxF guest <<<"$users"; then
  rabbitmqctl -q delete_user guest
  log "user guest deleted"
fi

# Check the result the way a client sees it: the management API answers and
# accepts the user's credentials (given to curl as a config file on stdin).
curl_user_config() {
  local v="$RABBITMQ_ADMIN_USER:$RABBITMQ_ADMIN_PASSWORD"
  v=${v//\\/\\\\}
  v=${v//\"/\\\"}
  printf 'user = "%s"\n' "$v"
}
management_ok() {
  curl_user_config | curl -fsS -o /dev/null --max-time 5 -K - \
    "http://$mgmt_ip:$RABBITMQ_MANAGEMENT_PORT/api/whoami" 2>/dev/null
}
wait_for 60 management_ok ||
  die "management API at $mgmt_ip:$RABBITMQ_MANAGEMENT_PORT does not accept user $RABBITMQ_ADMIN_USER"
prom_url="http://127.0.0.1:$RABBITMQ_PROMETHEUS_PORT/metrics"
wait_for 30 http_ok "$prom_url" || die "rabbitmq_prometheus does not answer at $prom_url"
log "vhost $RABBITMQ_VHOST and its users ready; management API (as $RABBITMQ_ADMIN_USER) and $prom_url answer"
