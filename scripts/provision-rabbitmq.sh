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

apt_install rabbitmq-server curl iproute2
start_rabbitmq

if quiet rabbitmq-plugins is_enabled rabbitmq_management; then
  log "plugin rabbitmq_management already enabled"
else
  rabbitmq-plugins enable rabbitmq_management
fi

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

# Listeners (see the header): written to a conf.d file; the node restarts
# only when what it runs differs (rabbitmq-diagnostics listeners).
require_env RABBITMQ_PORT RABBITMQ_MANAGEMENT_PORT
amqp_ips=(127.0.0.1) mgmt_ip=127.0.0.1
if [[ $(topology) == vms ]]; then
  require_env BILLING_VM_IP
  amqp_ips+=("$BILLING_VM_IP")
  mgmt_ip=$BILLING_VM_IP
fi
# Distribution (rabbitmqctl's port, 25672) on the address the node's host
# name resolves to, when that is a loopback address (127.0.0.1 here,
# 127.0.1.1 on a Debian VM): the CLI tools resolve the same name.
node_host=${RABBITMQ_NODENAME:-rabbit@$(hostname -s)}
node_host=${node_host#*@}
dist_ip=$(getent ahostsv4 "$node_host" | awk 'NR == 1 {print $1}') || dist_ip=
[[ $dist_ip == 127.* ]] || {
  log "warning: node host $node_host resolves to ${dist_ip:-nothing}, not loopback: Erlang distribution stays on every interface"
  dist_ip=
}
listen_conf=$conf_dir/80-moviestream-listeners.conf
listen_want=$(
  printf '# Written by scripts/provision-rabbitmq.sh from .env (docs/security.md).\n'
  # "default" replaces the listener of that name in rabbitmq.conf, if any.
  printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$RABBITMQ_PORT"
  [[ ${#amqp_ips[@]} -lt 2 ]] || printf 'listeners.tcp.private = %s:%s\n' "${amqp_ips[1]}" "$RABBITMQ_PORT"
  printf 'management.tcp.ip = %s\nmanagement.tcp.port = %s\n' "$mgmt_ip" "$RABBITMQ_MANAGEMENT_PORT"
  [[ -z $dist_ip ]] || printf 'distribution.listener.interface = %s\n' "$dist_ip"
)
if [[ $(cat -- "$listen_conf" 2>/dev/null) != "$listen_want" ]]; then
  mkdir -p -- "$conf_dir"
  printf '%s\n' "$listen_want" >"$listen_conf"
  chmod 0644 "$listen_conf"
  log "wrote $listen_conf"
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
node_down() { ! quiet rabbitmqctl status; }
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
# rabbitmq_prometheus plugin on 127.0.0.1:RABBITMQ_PROMETHEUS_PORT only. The
# conf.d file keeps the listener across node restarts; the running node gets
# the same setting before the plugin (re)starts, which never restarts the node.
require_env RABBITMQ_PROMETHEUS_PORT
[[ $RABBITMQ_PROMETHEUS_PORT =~ ^[0-9]+$ ]] || die "RABBITMQ_PROMETHEUS_PORT=$RABBITMQ_PROMETHEUS_PORT: not a port number"
prom_conf=$conf_dir/90-moviestream-prometheus.conf
prom_want=$(printf '# Written by scripts/provision-rabbitmq.sh from .env.\nprometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = %s\n' "$RABBITMQ_PROMETHEUS_PORT")
if [[ $(cat -- "$prom_conf" 2>/dev/null) != "$prom_want" ]]; then
  mkdir -p -- "${prom_conf%/*}"
  printf '%s\n' "$prom_want" >"$prom_conf"
  log "wrote $prom_conf"
fi
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
