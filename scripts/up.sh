#!/usr/bin/env bash
# scripts/up.sh: bring the whole system up on this one machine: the three
# role scripts (inventory and billing before the gateway that fronts them)
# with every role on this host, then wait until all three are healthy.
# Why: one idempotent command from a fresh host (or after a reboot without
# systemd) to a running system; running it again redeploys the current code.
# The Vagrant VMs run the same role scripts, one per VM: one code path.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

export MOVIESTREAM_TOPOLOGY=one-host

# Go first, then compile all three services before any of them restarts: a
# build error stops here and leaves the running services untouched.
bash "$here/provision-common.sh"
log "compiling gateway, inventory and billing"
go_build ./services/gateway ./services/inventory ./services/billing

bash "$here/role-inventory.sh"
bash "$here/role-billing.sh"
bash "$here/role-gateway.sh"
bash "$here/wait-healthy.sh"
