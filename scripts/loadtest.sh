#!/usr/bin/env bash
# scripts/loadtest.sh (make loadtest): measure the running `make up` stack
# under load, each figure next to a reference measured in the same run, and
# print one table (README, Performance; docs/testing.md):
#   a. GET /api/movies/:id through the gateway vs nginx in front of the same
#      inventory (64 connections, 1,000 movies)
#   b. POST /api/billing (64 connections) vs raw confirmed publishing
#   c. billing draining 100,000 orders vs a bare pgx + amqp091 consumer
#   d. GET /api/movies over 1,000,000 movies: time, peak RSS of inventory and
#      the gateway
#   e. GET /api/movies?title= (about 100 hits of the million): p50
# wrk (Debian's) generates the HTTP load; the Go helper in
# e2e/loadtest/cmd/loadtest runs wrk and the reference programs, reads the
# figures and prints the table. Everything stays on loopback. The run marks
# what it creates (movies, orders, test.* queues, a scratch database) with a
# random run id and deletes exactly that, also when it is interrupted (exit
# trap); billing_app, which row c stops, is started again in any case.
# Root: it installs packages, resets /proc/<pid>/clear_refs and drives PM2.
# Bounded: 2 to 6 minutes; the helper is killed after LOADTEST_TIMEOUT
# seconds (default 420), so the whole run stays under 10 minutes.
# Exit status 1 when a row misses its target or cannot be measured.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

tmp=
nginx_pid=
helper=
helper_pid=
run_id=

cleanup() {
  local rc=$?
  # Every step runs, whatever the one before did.
  set +e
  trap - EXIT INT TERM
  if [[ -n $helper_pid ]] && kill -0 "$helper_pid" 2>/dev/null; then
    # Interrupted: the helper ends its row (billing started again, its
    # rows deleted) before the checks below.
    log "stopping the helper (pid $helper_pid)"
    kill -TERM "$helper_pid" 2>/dev/null
    wait "$helper_pid" 2>/dev/null
  fi
  if [[ -n $nginx_pid ]]; then
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  if [[ -e $tmp/billing-stopped ]]; then
    log "starting billing_app again"
    pm2_run start billing_app >/dev/null || log "error: pm2 start billing_app failed: start it by hand"
  fi
  if [[ -x $helper ]]; then
    (cd "$REPO_ROOT/e2e" && "$helper" cleanup -run-id "$run_id") || log "error: cleanup of run $run_id failed (see above)"
  fi
  rm -rf -- "$tmp"
  exit "$rc"
}

require_root
load_env
require_env GATEWAY_PORT GATEWAY_INVENTORY_URL

# The stack must be up; bring it up if it is not.
if ! bash "$SCRIPTS_DIR/wait-healthy.sh" 5 >/dev/null 2>&1; then
  log "the stack is not (all) healthy: running scripts/up.sh first"
  bash "$SCRIPTS_DIR/up.sh"
fi
apt_install wrk nginx

# Inventory's address from the gateway's configuration: nginx proxies to the
# very same place. Loopback only.
inventory=${GATEWAY_INVENTORY_URL#http://}
inventory=${inventory%%/*}
[[ $inventory =~ ^(127\.[0-9]+\.[0-9]+\.[0-9]+|localhost):[0-9]+$ ]] ||
  die "GATEWAY_INVENTORY_URL=$GATEWAY_INVENTORY_URL is not on loopback; the load test only loads 127.0.0.0/8"

tmp=$(mktemp -d -t moviestream-loadtest.XXXXXX)
# nginx's workers run as an unprivileged user and use temp paths in here.
chmod 0755 -- "$tmp"
run_id=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
helper="$tmp/loadtest"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "run $run_id: building the helper (e2e/loadtest/cmd/loadtest)"
(cd "$REPO_ROOT/e2e" && go build -o "$helper" ./loadtest/cmd/loadtest)

# The reference proxy: nginx on a free loopback port with its own config,
# keepalive to inventory like the gateway's transport.
port=$("$helper" freeport)
cat >"$tmp/nginx.conf" <<NGINX
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx-body;
  proxy_temp_path $tmp/nginx-proxy;
  fastcgi_temp_path $tmp/nginx-fastcgi;
  uwsgi_temp_path $tmp/nginx-uwsgi;
  scgi_temp_path $tmp/nginx-scgi;
  upstream inventory {
    server $inventory;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://inventory;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
nginx -e "$tmp/nginx-error.log" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
wait_for 10 tcp_open 127.0.0.1 "$port" || die "nginx did not listen on 127.0.0.1:$port: $(cat "$tmp/nginx-error.log" 2>/dev/null)"
log "reference nginx (pid $nginx_pid) on 127.0.0.1:$port in front of $inventory"

# The helper's exit status is the script's: 1 when a row missed its target.
# It runs in the background so that a signal to this script reaches the
# trap at once (bash runs traps only between commands), and the trap stops
# the helper first.
cd "$REPO_ROOT/e2e"
timeout --kill-after=30 "${LOADTEST_TIMEOUT:-420}" "$helper" run -run-id "$run_id" \
  -nginx-url "http://127.0.0.1:$port" -dir "$tmp" -billing-stopped "$tmp/billing-stopped" &
helper_pid=$!
status=0
wait "$helper_pid" || status=$?
helper_pid=
# The script ends with the helper's status (set -e: a failing command ends it).
(exit "$status")
