#!/usr/bin/env bash
# scripts/role-gateway.sh: make this host the gateway host: common tools, then
# gateway_app in root's PM2, healthy on GATEWAY_PORT. No database, no broker.
# With one role per host (MOVIESTREAM_TOPOLOGY=vms: gateway-vm) the gateway
# finds inventory at http://INVENTORY_VM_IP:INVENTORY_PORT and RabbitMQ at
# BILLING_VM_IP: this host overrides GATEWAY_INVENTORY_URL and, while .env's
# RABBITMQ_ADDRS is the one node on loopback, RABBITMQ_ADDRS (a list of
# cluster nodes, docs/cluster.md, is kept as it is) (and adds GATEWAY_VM_IP to GATEWAY_ADMIN_ADDR for Prometheus on billing-vm)
# (scripts/lib.sh write_host_env); on one host .env applies as it is. At the
# end it reports, without failing, whether inventory and RabbitMQ are
# reachable: their hosts may simply not be up yet.
# Why: one script per role, run by Vagrant on gateway-vm and by up.sh on one
# machine, so both take the same code path. Running it again redeploys the
# current code.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
# Go first: load_env reads .env with the services' parser, a Go command.
bash "$here/provision-common.sh"
load_env
mode=$(topology)
require_env GATEWAY_PORT GATEWAY_INVENTORY_URL

inventory_url=$GATEWAY_INVENTORY_URL
if [[ $mode == vms ]]; then
  require_env INVENTORY_VM_IP INVENTORY_PORT BILLING_VM_IP GATEWAY_VM_IP GATEWAY_ADMIN_ADDR
  inventory_url="http://$INVENTORY_VM_IP:$INVENTORY_PORT"
  # The admin listener (/metrics) on loopback plus the private address,
  # where Prometheus on billing-vm scrapes it (never the NAT interface).
  admin_port=${GATEWAY_ADMIN_ADDR##*:}
  overrides=("GATEWAY_INVENTORY_URL=$inventory_url" "GATEWAY_ADMIN_ADDR=127.0.0.1:$admin_port,$GATEWAY_VM_IP:$admin_port")
  if [[ ${RABBITMQ_ADDRS:-} == 127.0.0.1:* && $RABBITMQ_ADDRS != *,* ]]; then
    overrides+=("RABBITMQ_ADDRS=$BILLING_VM_IP:${RABBITMQ_ADDRS##*:}")
  fi
  write_host_env gateway "${overrides[@]}"
else
  write_host_env gateway
fi

bash "$here/deploy-app.sh" gateway
bash "$here/wait-healthy.sh" 60 gateway

if wait_http "${inventory_url%/}/health" 30; then
  log "inventory answers at $inventory_url"
else
  log "warning: inventory does not answer at $inventory_url yet: /api/movies gets 502 until it does"
fi
if wait_http "http://127.0.0.1:$GATEWAY_PORT/ready" 30; then
  log "gateway is connected to RabbitMQ"
else
  log "warning: gateway is not connected to RabbitMQ yet: POST /api/billing gets 503 until it is"
fi
