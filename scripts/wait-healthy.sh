#!/usr/bin/env bash
# scripts/wait-healthy.sh [TIMEOUT_SECONDS] [gateway|inventory|billing]...
# Wait, at most TIMEOUT_SECONDS (default 60) in total, until the services
# named (default: all three) answer 200 on /health on this host (billing:
# each of its BILLING_INSTANCES processes, on BILLING_HEALTH_PORT and the
# ports after it); on timeout
# print the last PM2 log lines of each service still failing and exit 1.
# Why: a deploy is done when the services serve, not when PM2 has started them.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  die "usage: ${0##*/} [TIMEOUT_SECONDS] [gateway|inventory|billing]..."
}
timeout=60
if (($# > 0)) && [[ $1 =~ ^[0-9]+$ ]]; then
  timeout=$1
  shift
fi
pending=("$@")
((${#pending[@]} > 0)) || pending=(inventory billing gateway)
for svc in "${pending[@]}"; do
  case $svc in
    gateway | inventory | billing) ;;
    *) usage ;;
  esac
done
services=("${pending[@]}")

load_env
require_env GATEWAY_PORT INVENTORY_PORT BILLING_HEALTH_PORT
# Each service's /health addresses, space-separated.
declare -A url=(
  [gateway]="http://127.0.0.1:${GATEWAY_PORT}/health"
  [inventory]="http://127.0.0.1:${INVENTORY_PORT}/health"
)
for ((i = 0; i < ${BILLING_INSTANCES:-1}; i++)); do
  url[billing]+="${url[billing]:+ }http://127.0.0.1:$((BILLING_HEALTH_PORT + i))/health"
done

# all_ok URL...: every address answers.
all_ok() {
  local u
  for u in "$@"; do http_ok "$u" || return 1; done
}

deadline=$((SECONDS + timeout))
while :; do
  failing=()
  for svc in "${pending[@]}"; do
    # shellcheck disable=SC2086 # a list of addresses
    all_ok ${url[$svc]} || failing+=("$svc")
  done
  pending=("${failing[@]}")
  if ((${#pending[@]} == 0)); then
    log "healthy: ${services[*]}"
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
