#!/usr/bin/env bash
# scripts/role-inventory.sh: make this host the inventory host: common tools,
# PostgreSQL (loopback only, scram) with the inventory role owning
# INVENTORY_DB_NAME, then inventory_app in root's PM2, healthy on
# INVENTORY_PORT.
# With one role per host (MOVIESTREAM_TOPOLOGY=vms: inventory-vm), only the
# gateway at GATEWAY_VM_IP may set X-Forwarded-For, so this host overrides
# INVENTORY_TRUSTED_PROXIES (scripts/lib.sh write_host_env), and puts
# INVENTORY_ADMIN_ADDR on INVENTORY_VM_IP for Prometheus on billing-vm; on one host
# .env applies as it is.
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
  # The admin listener (/metrics) on the private address, where Prometheus
  # on billing-vm scrapes it.
  write_host_env inventory "INVENTORY_TRUSTED_PROXIES=$GATEWAY_VM_IP" \
    "INVENTORY_ADMIN_ADDR=$INVENTORY_VM_IP:${INVENTORY_ADMIN_ADDR##*:}"
else
  write_host_env inventory
fi

bash "$here/deploy-app.sh" inventory
bash "$here/wait-healthy.sh" 60 inventory
