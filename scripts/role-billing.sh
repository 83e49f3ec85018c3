#!/usr/bin/env bash
# scripts/role-billing.sh: make this host the billing host: common tools,
# PostgreSQL (loopback only, scram) with the billing role owning
# BILLING_DB_NAME, RabbitMQ with the management plugin, RABBITMQ_VHOST and
# one user per client with its permissions (guest deleted), then billing_app in
# root's PM2, healthy on BILLING_HEALTH_PORT; then Prometheus next to the
# broker (provision-prometheus.sh), scraping every role.
# Billing reaches its database and broker on this host, so it needs no
# address override. With one role per host (MOVIESTREAM_TOPOLOGY=vms:
# billing-vm) the script also checks that the broker accepts connections on
# BILLING_VM_IP, where gateway-vm publishes.
# Why: one script per role, run by Vagrant on billing-vm and by up.sh on one
# machine, so both take the same code path. Running it again re-provisions
# from .env and redeploys the current code.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
# Go first: load_env reads .env with the services' parser, a Go command.
bash "$here/provision-common.sh"
load_env
mode=$(topology)

bash "$here/provision-postgres.sh" billing
bash "$here/provision-rabbitmq.sh"

if [[ $mode == vms ]]; then
  require_env BILLING_VM_IP RABBITMQ_PORT
  wait_for 30 tcp_open "$BILLING_VM_IP" "$RABBITMQ_PORT" ||
    die "RabbitMQ does not accept connections on $BILLING_VM_IP:$RABBITMQ_PORT, where the gateway publishes; check listeners.tcp in rabbitmq.conf"
  log "RabbitMQ accepts connections on $BILLING_VM_IP:$RABBITMQ_PORT"
fi
write_host_env billing

bash "$here/deploy-app.sh" billing
bash "$here/wait-healthy.sh" 60 billing
bash "$here/provision-prometheus.sh"
