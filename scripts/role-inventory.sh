#!/usr/bin/env bash
# scripts/role-inventory.sh: make this host the inventory host: common tools,
# PostgreSQL (loopback only, scram) with the inventory role owning
# INVENTORY_DB_NAME, then inventory_app in root's PM2, healthy on
# INVENTORY_PORT.
# With one role per host (MOVIESTREAM_TOPOLOGY=vms: inventory-vm), only the
# gateway at GATEWAY_VM_IP may set X-Forwarded-For, so this host overrides
# INVENTORY_TRUSTED_PROXIES (scripts/lib.sh write_host_env), makes the API
# listen on loopback plus INVENTORY_VM_IP, where gateway-vm calls it
# (INVENTORY_BIND), and the admin listener likewise, for Prometheus on
# billing-vm (INVENTORY_ADMIN_ADDR); never on the NAT interface. On one host
# .env applies as it is (loopback only).
# Why: one script per role, run by Vagrant on inventory-vm and by up.sh on
# one machine, so both take the same code path. Running it again
# re-provisions from .env and redeploys the current code.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
# Go first: load_env reads .env with the services' parser, a Go command.
bash "$here/provision-common.sh"
load_env
mode=$(topology)

bash "$here/provision-postgres.sh" inventory

if [[ $mode == vms ]]; then
  require_env GATEWAY_VM_IP INVENTORY_VM_IP INVENTORY_ADMIN_ADDR
  # The API for gateway-vm and the admin listener (/metrics) for Prometheus
  # on billing-vm, on the private address; loopback too, for checks on the VM.
  admin_port=${INVENTORY_ADMIN_ADDR##*:}
  write_host_env inventory "INVENTORY_TRUSTED_PROXIES=$GATEWAY_VM_IP" \
    "INVENTORY_BIND=127.0.0.1,$INVENTORY_VM_IP" \
    "INVENTORY_ADMIN_ADDR=127.0.0.1:$admin_port,$INVENTORY_VM_IP:$admin_port"
else
  write_host_env inventory
fi

bash "$here/deploy-app.sh" inventory
bash "$here/wait-healthy.sh" 60 inventory
