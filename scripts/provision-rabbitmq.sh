#!/usr/bin/env bash
# scripts/provision-rabbitmq.sh: install RabbitMQ if missing, start it if
# stopped, enable the management plugin, and create or update, from .env,
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
log "vhost $RABBITMQ_VHOST and user $RABBITMQ_USER ready; management API answers"
