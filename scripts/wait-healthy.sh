#!/usr/bin/env bash
# scripts/wait-healthy.sh [TIMEOUT_SECONDS]
# Wait, at most TIMEOUT_SECONDS (default 60) in total, until the gateway,
# inventory and billing answer 200 on /health; on timeout print the last PM2
# log lines of each service still failing and exit 1.
# Why: a deploy is done when the services serve, not when PM2 has started them.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

timeout=${1:-60}
[[ $timeout =~ ^[0-9]+$ ]] || die "usage: ${0##*/} [TIMEOUT_SECONDS]"

load_env
require_env GATEWAY_PORT INVENTORY_PORT BILLING_HEALTH_PORT
declare -A url=(
  [gateway]="http://127.0.0.1:${GATEWAY_PORT}/health"
  [inventory]="http://127.0.0.1:${INVENTORY_PORT}/health"
  [billing]="http://127.0.0.1:${BILLING_HEALTH_PORT}/health"
)

pending=(inventory billing gateway)
deadline=$((SECONDS + timeout))
while :; do
  failing=()
  for svc in "${pending[@]}"; do
    http_ok "${url[$svc]}" || failing+=("$svc")
  done
  pending=("${failing[@]}")
  if ((${#pending[@]} == 0)); then
    log "gateway, inventory and billing are healthy"
    exit 0
  fi
  ((SECONDS < deadline)) || break
  sleep 1
done

for svc in "${pending[@]}"; do
  log "${svc} not healthy after ${timeout} s: ${url[$svc]}"
  if command -v pm2 >/dev/null && pm2_daemon_running; then
    pm2_run logs "${svc}_app" --nostream --lines 50 || true
  else
    log "PM2 is not running: no logs to show"
  fi
done
exit 1
