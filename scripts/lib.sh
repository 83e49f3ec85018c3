#!/usr/bin/env bash
# scripts/lib.sh: helpers shared by the scripts in scripts/ and by .ci/run.
# Sourced, never executed:   . "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
#
# Why: one place for loading .env (a variable already set in the real
# environment wins), logging, and the "install if missing / start if stopped"
# logic that must work both with systemd and without it (containers, CI
# runners). It sets no shell options: every caller runs `set -euo pipefail`
# itself, and sourcing this file into an interactive shell stays harmless.
# shellcheck shell=bash

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
SCRIPTS_DIR="$REPO_ROOT/scripts"
# shellcheck source=versions.sh
. "$SCRIPTS_DIR/versions.sh"

# Where deploy-app.sh puts the binaries and PM2 runs them from. The VMs set
# it outside the synced folder, so a VM never overwrites the host's bin/.
# shellcheck disable=SC2034 # used by the scripts that source this file
BIN_DIR=${MOVIESTREAM_BIN_DIR:-$REPO_ROOT/bin}

# Per-host address overrides, one file per service (see write_host_env).
HOST_ENV_DIR=${MOVIESTREAM_HOST_DIR:-/etc/moviestream}

# PM2 keeps its state in PM2_HOME, by default $HOME/.pm2. Pin it to the home
# of the user running the script, whatever HOME says (sudo may keep the
# caller's HOME): `pm2 startup --hp` points the boot service at that same
# home, and `sudo pm2 list` then sees the apps the scripts started.
if [[ -z ${PM2_HOME:-} ]]; then
  _lib_home=$(getent passwd "$(id -u)" | cut -d: -f6) || _lib_home=
  if [[ -n $_lib_home ]]; then
    PM2_HOME="$_lib_home/.pm2"
    export PM2_HOME
  fi
  unset _lib_home
fi

# provision-common.sh installs Go here; it comes first for every script.
case ":$PATH:" in
  *:/usr/local/go/bin:*) ;;
  *) PATH="/usr/local/go/bin:$PATH" ;;
esac
export PATH

# log MESSAGE...: one line on stderr, prefixed with the script name.
log() {
  printf '[%s] %s\n' "${0##*/}" "$*" >&2
}

# die MESSAGE...: log and exit 1.
die() {
  log "error: $*"
  exit 1
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (installs packages and manages services)"
}

# require_env NAME...: fail naming every variable that is unset or empty.
require_env() {
  local name missing=()
  for name in "$@"; do
    [[ -n ${!name:-} ]] || missing+=("$name")
  done
  ((${#missing[@]} == 0)) || die "missing in the environment and in .env: ${missing[*]}"
}

# load_env: export every variable of the repository's .env (or of $ENV_FILE
# when set), except those already set in the real environment, which win.
# The names taken from the file are kept in MOVIESTREAM_DOTENV_KEYS (exported,
# so child scripts know them too) for pm2_run, which keeps them out of PM2.
#
# The file is never sourced: it is parsed by the services' own parser
# (godotenv, through pkg/config/cmd/dotenv), so quotes, $, backslashes and
# backticks read the same in scripts and services, and nothing in a value
# is ever run (a backtick in a password would otherwise run as root). The
# command hands over NUL-terminated KEY=VALUE records that are assigned with
# export, evaluating nothing. It needs Go (provision-common.sh installs it);
# `go run` keeps the built command in Go's build cache (about 0.1 s a call).
# Local names are prefixed to avoid clashing with names defined in the file.
load_env() {
  local _le_file=${ENV_FILE:-$REPO_ROOT/.env}
  [[ -r $_le_file ]] || die "env file $_le_file not found or not readable"
  command -v go >/dev/null ||
    die "go not found: load_env reads $_le_file with the services' parser (pkg/config/cmd/dotenv); run scripts/provision-common.sh first"

  local -a _le_records
  mapfile -t -d '' _le_records < <(
    cd -- "$REPO_ROOT/pkg" && go run -buildvcs=false ./config/cmd/dotenv "$_le_file"
  )
  wait "$!" || die "cannot read $_le_file (the message above names the problem)"

  # A name inherited from a parent script that itself read it from the file
  # is not "real environment": read it again from the file.
  local _le_inherited=" ${MOVIESTREAM_DOTENV_KEYS:-} " _le_record _le_name
  local -a _le_from_file=()
  for _le_record in "${_le_records[@]}"; do
    _le_name=${_le_record%%=*}
    if [[ -v $_le_name && $_le_inherited != *" $_le_name "* ]]; then
      continue
    fi
    export "$_le_name=${_le_record#*=}"
    _le_from_file+=("$_le_name")
  done
  # The Erlang cookie stays in this shell: exported, it would reach every
  # child's environment (ps e shows it) and RabbitMQ's CLI would act on a
  # variable of that name. A child script reads it again from the file.
  [[ ! -v RABBITMQ_ERLANG_COOKIE ]] || export -n RABBITMQ_ERLANG_COOKIE
  MOVIESTREAM_DOTENV_KEYS="${_le_from_file[*]}"
  export MOVIESTREAM_DOTENV_KEYS
}

# pm2_run ARGS...: run pm2 without the variables load_env read from .env, so
# that `--update-env` never copies configuration (secrets included) into PM2
# and its dump file. The apps read .env themselves through ENV_FILE; what
# the operator set in the real environment still reaches them.
pm2_run() {
  local key
  local -a unset_args=(-u MOVIESTREAM_DOTENV_KEYS)
  for key in ${MOVIESTREAM_DOTENV_KEYS:-}; do
    unset_args+=(-u "$key")
  done
  env "${unset_args[@]}" pm2 "$@"
}

# pm2_daemon_running: true when the PM2 daemon of this user runs. Checked
# without the pm2 command, which would spawn the daemon.
pm2_daemon_running() {
  local pidfile="${PM2_HOME:-${HOME:-}/.pm2}/pm2.pid" pid
  [[ -r $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

have_systemd() {
  [[ -d /run/systemd/system ]]
}

# wait_for SECONDS COMMAND...: run COMMAND every second until it succeeds;
# return 1 when SECONDS have passed without success.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# quiet COMMAND...: run COMMAND with its output discarded.
quiet() {
  "$@" >/dev/null 2>&1
}

# apt_install PACKAGE...: install the packages that are not installed yet.
# The package lists are refreshed first unless they are under an hour old
# (one `apt-get update` per run, even across the sibling scripts of up.sh).
# A failure stops the run with a message naming the calling script, the
# step and the packages, so nothing half-installed goes on to be reported
# as healthy. Waits up to 5 minutes for a dpkg lock held by another apt.
apt_install() {
  local pkg status rc
  local -a missing=()
  for pkg in "$@"; do
    # shellcheck disable=SC2016 # ${Status} is a dpkg-query field, not a shell variable
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} > 0)) || return 0

  require_root
  local -a apt_opts=(-q -o DPkg::Lock::Timeout=300)
  if ! apt_lists_fresh; then
    log "apt-get update (package lists older than an hour)"
    rc=0
    apt-get "${apt_opts[@]}" update || rc=$?
    ((rc == 0)) || die "step apt-get update failed (exit $rc) while installing ${missing[*]}: check the network and /etc/apt/sources.list"
    mkdir -p -- "${APT_UPDATE_STAMP%/*}" && touch -- "$APT_UPDATE_STAMP"
  fi
  log "installing ${missing[*]}"
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" || rc=$?
  ((rc == 0)) || die "step apt-get install failed (exit $rc) for package(s): ${missing[*]}"
}

# apt_lists_fresh: true when an `apt-get update` of ours (or of apt's own
# periodic job, which keeps the same stamp) succeeded less than an hour ago.
# The lists' own mtimes cannot tell: apt gives them the mirror's dates.
APT_UPDATE_STAMP=/var/lib/apt/periodic/update-success-stamp
apt_lists_fresh() {
  [[ -n $(find "$APT_UPDATE_STAMP" -mmin -60 -print -quit 2>/dev/null) ]]
}

# start_postgres: start every PostgreSQL cluster that is not running, then
# wait until the server accepts connections.
start_postgres() {
  if have_systemd; then
    if ! quiet pg_isready; then
      log "starting PostgreSQL (systemd)"
      systemctl start postgresql
    fi
  else
    local ver cluster port status rest found=
    while read -r ver cluster port status rest; do
      found=1
      [[ $status == online* ]] && continue
      log "starting PostgreSQL cluster $ver/$cluster (port $port)"
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start
    done < <(pg_lsclusters --no-header)
    [[ -n $found ]] || die "no PostgreSQL cluster found (pg_lsclusters is empty)"
  fi
  wait_for 60 quiet pg_isready ||
    die "PostgreSQL does not accept connections after 60 s; see /var/log/postgresql/"
}

# start_rabbitmq: start the RabbitMQ node if it does not answer, then wait
# until the broker application has started.
start_rabbitmq() {
  if ! quiet rabbitmqctl status; then
    if have_systemd; then
      log "starting RabbitMQ (systemd)"
      systemctl start rabbitmq-server
    else
      log "starting RabbitMQ (rabbitmq-server -detached)"
      rabbitmq-server -detached
    fi
  fi
  wait_for 90 quiet rabbitmqctl --timeout 10 await_startup ||
    die "RabbitMQ did not start within 90 s; see /var/log/rabbitmq/"
}

# http_ok URL: true when URL answers 200.
http_ok() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1") || true
  [[ $code == 200 ]]
}

# wait_http URL TIMEOUT_SECONDS: wait until URL answers 200; 1 on timeout.
wait_http() {
  wait_for "$2" http_ok "$1"
}

# topology: print how the roles are spread, from MOVIESTREAM_TOPOLOGY:
#   one-host  every role on this machine (make up): .env addresses as they are
#   vms       one role per host (Vagrant, make test-topology): the peers are at
#             GATEWAY_VM_IP, INVENTORY_VM_IP and BILLING_VM_IP
topology() {
  local t=${MOVIESTREAM_TOPOLOGY:-one-host}
  case $t in
    one-host | vms) printf '%s\n' "$t" ;;
    *)
      log "error: MOVIESTREAM_TOPOLOGY=$t: expected one-host or vms"
      return 1
      ;;
  esac
}

# write_host_env SERVICE [KEY=VALUE...]: write the per-host overrides of
# SERVICE to $HOST_ENV_DIR/SERVICE.env, which scripts/ecosystem.config.js
# puts into the PM2 process environment, where they win over .env. Without
# pairs the file is removed: the service then runs on .env alone. Only
# addresses belong here: a secret-looking key is refused, so .env stays the
# only place for credentials.
write_host_env() {
  local service=$1 file pair key tmp
  shift
  file="$HOST_ENV_DIR/$service.env"
  if (($# == 0)); then
    if [[ -e $file ]]; then
      log "removing $file: $service runs on .env alone"
      rm -f -- "$file"
    fi
    return 0
  fi
  for pair in "$@"; do
    key=${pair%%=*}
    [[ $pair == *=* && $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "write_host_env: not KEY=VALUE: $pair"
    [[ $key != *PASSWORD* && $key != *SECRET* && $key != *TOKEN* && $key != *_KEY && $key != *COOKIE* ]] ||
      die "write_host_env: $key looks like a secret; secrets stay in .env"
    [[ $pair != *$'\n'* ]] || die "write_host_env: $key contains a newline"
  done
  mkdir -p -- "$HOST_ENV_DIR"
  tmp=$(mktemp "$file.XXXXXX")
  {
    printf '# Written by %s: address overrides for %s on this host (no secrets;\n' "${0##*/}" "$service"
    printf '# those stay in .env). Regenerated by every provisioning run.\n'
    printf '%s\n' "$@"
  } >"$tmp"
  chmod 0644 "$tmp"
  mv -f -- "$tmp" "$file"
  log "wrote $file: ${*%%=*}"
}

# tcp_open HOST PORT: true when a TCP connection to HOST:PORT succeeds
# within 3 seconds.
tcp_open() {
  # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# go_build ARGS...: `go build ARGS...` in the repository root. Go stamps
# binaries with VCS data by running git; where git refuses the checkout (a
# Vagrant synced folder owned by another user: "dubious ownership"), build
# without the stamp rather than fail.
go_build() {
  local -a flags=()
  if [[ -e $REPO_ROOT/.git ]] && ! quiet git -C "$REPO_ROOT" status --porcelain; then
    log "git cannot read $REPO_ROOT here: building with -buildvcs=false"
    flags+=(-buildvcs=false)
  elif [[ -e $REPO_ROOT/.git ]]; then
    # Asked for explicitly: a GOFLAGS=-buildvcs=false in the machine's go
    # env would otherwise leave /metadata without a version.
    flags+=(-buildvcs=true)
  fi
  (cd "$REPO_ROOT" && go build "${flags[@]}" "$@")
}
