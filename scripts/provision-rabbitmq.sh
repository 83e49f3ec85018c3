#!/usr/bin/env bash
# scripts/provision-rabbitmq.sh: install RabbitMQ if missing, start it if
# stopped, enable the management plugin and the rabbitmq_prometheus plugin
# (on 127.0.0.1:RABBITMQ_PROMETHEUS_PORT), and create or update, from .env,
# the vhost RABBITMQ_VHOST and the user RABBITMQ_USER / RABBITMQ_PASSWORD
# (tag "management", configure/write/read ".*" on that vhost only).
# Why: the services and the broker tests connect as this user; .env stays the
# source of truth (running again resets the password). The guest user is left
# alone, and queues are declared by the services themselves, not here; the
# script only checks that guest is loopback-only (RabbitMQ's default
# loopback_users), an error with one role per host (vms), else a warning.
# RABBITMQ_NODENAME and the other RABBITMQ_* variables of the CLI tools pick
# the node (scripts/test-topology.sh runs a private one).
# The password reaches rabbitmqctl on stdin, never on a command line.
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
require_env RABBITMQ_VHOST RABBITMQ_USER RABBITMQ_PASSWORD
[[ $RABBITMQ_PASSWORD != *$'\n'* ]] || die "RABBITMQ_PASSWORD contains a newline"

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

users=$(rabbitmqctl -s list_users | cut -f1)
if grep -qxF -- "$RABBITMQ_USER" <<<"$users"; then
  log "user $RABBITMQ_USER exists: setting its password from .env"
  printf '%s\n' "$RABBITMQ_PASSWORD" | rabbitmqctl change_password "$RABBITMQ_USER" >/dev/null
else
  printf '%s\n' "$RABBITMQ_PASSWORD" | rabbitmqctl add_user "$RABBITMQ_USER" >/dev/null
fi
rabbitmqctl set_user_tags "$RABBITMQ_USER" management
rabbitmqctl set_permissions -p "$RABBITMQ_VHOST" "$RABBITMQ_USER" '.*' '.*' '.*'

if grep -qxF guest <<<"$users"; then
  loopback=$(rabbitmqctl -q eval 'application:get_env(rabbit, loopback_users).' 2>/dev/null) || loopback=
  if [[ $loopback == *'<<"guest">>'* ]]; then
    log "user guest can log in from loopback only"
  elif [[ $(topology) == vms ]]; then
    die "user guest is not loopback-only (loopback_users = ${loopback:-unknown}); remove the override"
  else
    log "warning: user guest is not loopback-only (loopback_users = ${loopback:-unknown}); shared broker left as it is"
  fi
fi

# Check the result the way a client sees it: the management API answers and
# accepts the user's credentials (given to curl as a config file on stdin).
curl_user_config() {
  local v="$RABBITMQ_USER:$RABBITMQ_PASSWORD"
  v=${v//\\/\\\\}
  v=${v//\"/\\\"}
  printf 'user = "%s"\n' "$v"
}
management_ok() {
  curl_user_config | curl -fsS -o /dev/null --max-time 5 -K - \
    "http://$mgmt_ip:$RABBITMQ_MANAGEMENT_PORT/api/whoami" 2>/dev/null
}
wait_for 60 management_ok ||
  die "management API at $mgmt_ip:$RABBITMQ_MANAGEMENT_PORT does not accept user $RABBITMQ_USER"
prom_url="http://127.0.0.1:$RABBITMQ_PROMETHEUS_PORT/metrics"
wait_for 30 http_ok "$prom_url" || die "rabbitmq_prometheus does not answer at $prom_url"
log "vhost $RABBITMQ_VHOST and user $RABBITMQ_USER ready; management API and $prom_url answer"
