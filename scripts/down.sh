#!/usr/bin/env bash
# scripts/down.sh: stop the three services and remove them from PM2 (gateway
# first, so intake stops before the backends), then save the PM2 process list
# so they do not come back at boot.
# Why: the counterpart of up.sh. PostgreSQL, RabbitMQ and their data stay;
# services that are not running are skipped, so running it again is harmless.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

if ! command -v pm2 >/dev/null; then
  log "pm2 not installed: nothing to stop"
  exit 0
fi
if ! pm2_daemon_running; then
  # Nothing runs; leave the saved process list alone rather than spawning a
  # daemon only to overwrite the list with an empty one.
  log "PM2 daemon not running: nothing to stop"
  exit 0
fi

for app in gateway_app inventory_app billing_app; do
  if quiet pm2_run describe "$app"; then
    log "stopping $app"
    pm2_run delete "$app"
  else
    log "$app not in PM2"
  fi
done
pm2_run save --force
