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
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
load_env
require_env RABBITMQ_VHOST RABBITMQ_USER RABBITMQ_PASSWORD
[[ $RABBITMQ_PASSWORD != *$'\n'* ]] || die "RABBITMQ_PASSWORD contains a newline"

apt_install rabbitmq-server curl
start_rabbitmq

if quiet rabbitmq-plugins is_enabled rabbitmq_management; then
  log "plugin rabbitmq_management already enabled"
else
  rabbitmq-plugins enable rabbitmq_management
fi

# Metrics for Prometheus (scripts/provision-prometheus.sh): the
# rabbitmq_prometheus plugin on 127.0.0.1:RABBITMQ_PROMETHEUS_PORT only. The
# conf.d file keeps the listener across node restarts; the running node gets
# the same setting before the plugin (re)starts, which never restarts the node.
require_env RABBITMQ_PROMETHEUS_PORT
[[ $RABBITMQ_PROMETHEUS_PORT =~ ^[0-9]+$ ]] || die "RABBITMQ_PROMETHEUS_PORT=$RABBITMQ_PROMETHEUS_PORT: not a port number"
prom_conf=/etc/rabbitmq/conf.d/90-moviestream-prometheus.conf
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
    "http://${RABBITMQ_HOST:-127.0.0.1}:${RABBITMQ_MANAGEMENT_PORT:-15672}/api/whoami" 2>/dev/null
}
wait_for 60 management_ok ||
  die "management API on port ${RABBITMQ_MANAGEMENT_PORT:-15672} does not accept user $RABBITMQ_USER"
prom_url="http://127.0.0.1:$RABBITMQ_PROMETHEUS_PORT/metrics"
wait_for 30 http_ok "$prom_url" || die "rabbitmq_prometheus does not answer at $prom_url"
log "vhost $RABBITMQ_VHOST and user $RABBITMQ_USER ready; management API and $prom_url answer"
