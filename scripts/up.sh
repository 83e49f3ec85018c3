#!/usr/bin/env bash
# scripts/up.sh: bring the whole system up on this one machine: common tools,
# PostgreSQL (inventory and billing roles), RabbitMQ, then the services
# (inventory and billing before the gateway that fronts them), and wait until
# all three are healthy.
# Why: one idempotent command from a fresh host (or after a reboot without
# systemd) to a running system; running it again redeploys the current code.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

bash "$here/provision-common.sh"
bash "$here/provision-postgres.sh" inventory billing
bash "$here/provision-rabbitmq.sh"
bash "$here/deploy-app.sh" inventory billing gateway
bash "$here/wait-healthy.sh"
