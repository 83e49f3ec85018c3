#!/usr/bin/env bash
# scripts/deploy-app.sh <gateway|inventory|billing>...
# Build <service> from the working tree into $MOVIESTREAM_BIN_DIR (default
# bin/) and start the service under PM2, or restart it when it already runs,
# then save the PM2 process list (and, with systemd, register PM2 to start at
# boot, once; MOVIESTREAM_PM2_STARTUP=no skips that, for the private PM2
# daemons of scripts/test-topology.sh).
# Why: one command puts the current code in production on this host; running
# it again rebuilds and restarts, so new code is always picked up. All
# binaries are built before any restart, so a build error leaves the running
# services untouched; each binary is replaced atomically (rename).
# The services run as the system user moviestream (provision-common.sh,
# ecosystem.config.js): the bin directory and binaries are root's, mode 0755;
# .env is root:moviestream 0640, readable by the services and writable by
# root only. Where the file system ignores chgrp/chmod (a Vagrant synced
# folder), the script only checks that moviestream can read what it needs.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  echo "usage: ${0##*/} <gateway|inventory|billing>..." >&2
  exit 2
}
(($# > 0)) || usage
for svc in "$@"; do
  case $svc in
    gateway | inventory | billing) ;;
    *) usage ;;
  esac
done

command -v go >/dev/null || die "go not found: run scripts/provision-common.sh"
command -v pm2 >/dev/null || die "pm2 not found: run scripts/provision-common.sh"

# From the root: a relative MOVIESTREAM_BIN_DIR means the same directory to
# this script and to the ecosystem file evaluated by the pm2 command below.
cd "$REPO_ROOT"
mkdir -p -- "$BIN_DIR"
for svc in "$@"; do
  log "building $BIN_DIR/$svc"
  go_build -o "$BIN_DIR/.$svc.new" "./services/$svc"
done
for svc in "$@"; do
  chmod 0755 -- "$BIN_DIR/.$svc.new"
  mv -f -- "$BIN_DIR/.$svc.new" "$BIN_DIR/$svc"
done

# What the services' user needs: execute the binaries, read .env; nothing
# it may write (docs/security.md).
id -u moviestream >/dev/null 2>&1 || die "system user moviestream missing: run scripts/provision-common.sh"
env_file=${ENV_FILE:-$REPO_ROOT/.env}

# A checkout the services' user cannot enter (under /root, say) is deployed
# to RUN_DIR instead: a copy of the binaries and of .env (0640
# root:moviestream), refreshed by every deploy; PM2 runs them from there.
RUN_DIR=${MOVIESTREAM_RUN_DIR:-/var/lib/moviestream/run}
if ! runuser -u moviestream -- test -x "$REPO_ROOT"; then
  log "the services' user moviestream cannot enter $REPO_ROOT: running the services from $RUN_DIR"
  install -d -m 0755 -- "$RUN_DIR" "$RUN_DIR/bin"
  for svc in "$@"; do
    install -m 0755 -- "$BIN_DIR/$svc" "$RUN_DIR/bin/.$svc.new"
    mv -f -- "$RUN_DIR/bin/.$svc.new" "$RUN_DIR/bin/$svc"
  done
  install -m 0640 -o root -g moviestream -- "$env_file" "$RUN_DIR/.env.new"
  mv -f -- "$RUN_DIR/.env.new" "$RUN_DIR/moviestream.env"
  BIN_DIR=$RUN_DIR/bin
  env_file=$RUN_DIR/moviestream.env
  # Read by ecosystem.config.js when the pm2 commands below evaluate it.
  export MOVIESTREAM_BIN_DIR=$BIN_DIR ENV_FILE=$env_file
fi
chmod 0755 -- "$BIN_DIR" 2>/dev/null || log "warning: cannot chmod 0755 $BIN_DIR (synced folder?)"
if chgrp moviestream -- "$env_file" 2>/dev/null && chmod 0640 -- "$env_file" 2>/dev/null; then
  log "$env_file: root:moviestream 0640"
else
  log "warning: cannot set $env_file to group moviestream, mode 0640 (synced folder?): left as $(stat -c '%U:%G %a' -- "$env_file")"
fi
for f in "$env_file" "${@/#/$BIN_DIR/}"; do
  runuser -u moviestream -- test -r "$f" ||
    die "the services' user moviestream cannot read $f: let it read the file (docs/security.md)"
done
for d in "$REPO_ROOT" "$BIN_DIR"; do
  if runuser -u moviestream -- test -w "$d" 2>/dev/null; then
    log "warning: the services' user moviestream can write to $d (a synced folder's mount options?): docs/security.md"
  fi
done

# pm2_script NAME: the program PM2 runs as NAME and how many processes
# ("PATH COUNT"), or nothing when PM2 has no such app. (No jq: node is there
# whenever pm2 is.)
pm2_script() {
  # shellcheck disable=SC2016 # the JavaScript is single-quoted on purpose
  pm2_run jlist 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let apps = []; try { apps = JSON.parse(s); } catch (e) {}
      const mine = apps.filter((x) => x.name === process.argv[1]);
      if (mine.length) process.stdout.write(`${mine[0].pm2_env.pm_exec_path || ""} ${mine.length}`);
    });' "$1"
}

# Billing's process count: BILLING_INSTANCES of .env (1 when unset), read
# only when billing is deployed. ecosystem.config.js reads it as
# MOVIESTREAM_BILLING_INSTANCES: pm2_run keeps every variable read from
# .env away from PM2 (secrets among them).
billing_instances=1
if [[ " $* " == *" billing "* ]]; then
  load_env
  billing_instances=${BILLING_INSTANCES:-1}
  [[ $billing_instances =~ ^([1-9]|1[0-6])$ ]] || die "BILLING_INSTANCES=$billing_instances: want a number from 1 to 16"
  export MOVIESTREAM_BILLING_INSTANCES=$billing_instances
fi

for svc in "$@"; do
  # startOrRestart keeps an existing app's program and working directory:
  # an app started from another checkout (or another bin dir) would go on
  # running the old binary. Replace it instead.
  # startOrRestart does not change the number of processes either.
  want=$(realpath -m -- "$BIN_DIR/$svc")
  count=1
  [[ $svc != billing ]] || count=$billing_instances
  have=$(pm2_script "${svc}_app" || true)
  if [[ -n $have && $have != "$want $count" ]]; then
    log "${svc}_app runs $have (program, processes); replacing it with $want $count"
    pm2_run delete "${svc}_app" >/dev/null
  fi
  log "starting or restarting ${svc}_app"
  pm2_run startOrRestart "$SCRIPTS_DIR/ecosystem.config.js" --only "${svc}_app" --update-env
done
pm2_run save

if [[ ${MOVIESTREAM_PM2_STARTUP:-yes} == no ]]; then
  log "MOVIESTREAM_PM2_STARTUP=no: PM2 boot service left alone"
elif have_systemd; then
  user=$(id -un)
  if [[ -f /etc/systemd/system/pm2-$user.service ]]; then
    log "PM2 boot service pm2-$user already installed"
  else
    pm2_run startup systemd -u "$user" --hp "$(getent passwd "$user" | cut -d: -f6)"
  fi
else
  log "no systemd: PM2 boot service skipped (run scripts/up.sh after a reboot)"
fi
