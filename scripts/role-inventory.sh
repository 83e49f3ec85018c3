#!/usr/bin/env bash
# scripts/role-inventory.sh: make this host the inventory host: common tools,
# PostgreSQL (loopback only, scram) with the inventory role owning
# INVENTORY_DB_NAME, then inventory_app in root's PM2, healthy on
# INVENTORY_PORT.
# With one role per host (MOVIESTREAM_TOPOLOGY=vms: inventory-vm), only the
# gateway at GATEWAY_VM_IP may set X-Forwarded-For, so this host overrides
# INVENTORY_TRUSTED_PROXIES (scripts/lib.sh write_host_env); on one host
# .env applies as it is.
# Why: one script per role, run by Vagrant on inventory-vm and by up.sh on
# one machine, so both take the same code path. Running it again
# re-provisions from .env and redeploys the current code.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
load_env
mode=$(topology)

bash "$here/provision-common.sh"
bash "$here/provision-postgres.sh" inventory

if [[ $mode == vms ]]; then
  require_env GATEWAY_VM_IP
  write_host_env inventory "INVENTORY_TRUSTED_PROXIES=$GATEWAY_VM_IP"
else
  write_host_env inventory
fi

bash "$here/deploy-app.sh" inventory
bash "$here/wait-healthy.sh" 60 inventory
