#!/usr/bin/env bash
# scripts/provision-common.sh: install what every moviestream host needs, and
# only what is missing: curl, CA certificates, git (Go stamps builds with VCS
# data), make, a C toolchain (the race detector of `go test -race` needs cgo),
# Node.js + npm from the distribution, PM2 (runs the services), the Go
# toolchain pinned in scripts/versions.sh, and the system user moviestream
# (no home, no login shell, its own group) the services run as
# (scripts/ecosystem.config.js, docs/security.md).
# Why: a fresh Debian/Ubuntu host or CI runner can build, test and run the
# services after this script; running it again changes nothing.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root

apt_install ca-certificates curl git make gcc libc6-dev tar gzip passwd

# The services' system user: PM2 (root's daemon) starts them as it; it owns
# nothing and can write nowhere in the repository (deploy-app.sh).
if id -u moviestream >/dev/null 2>&1; then
  log "system user moviestream present"
else
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group moviestream
  log "created system user moviestream"
fi

# Node.js and npm: distribution packages, only when the commands are missing
# (a NodeSource build, which bundles npm, is kept as it is).
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm

# (No `pm2 --version` here: any pm2 command spawns the PM2 daemon.)
if command -v pm2 >/dev/null; then
  log "pm2 present: $(command -v pm2)"
else
  log "installing pm2@$PM2_VERSION with npm"
  npm install --global --no-fund --no-audit "pm2@$PM2_VERSION" ||
    die "step npm install failed for package pm2@$PM2_VERSION: check access to npm's registry (npm config get registry)"
  command -v pm2 >/dev/null || die "step npm install: pm2@$PM2_VERSION installed but pm2 is not in PATH ($(npm prefix -g)/bin)"
fi

# go_is_current: `go` exists and is at least GO_VERSION. Run outside the
# repository with GOTOOLCHAIN=local so that go.work cannot switch toolchains.
go_is_current() {
  local have
  command -v go >/dev/null || return 1
  have=$(cd / && GOTOOLCHAIN=local go env GOVERSION 2>/dev/null) || return 1
  have=${have#go}
  have=${have%% *}
  [[ $(printf '%s\n%s\n' "$GO_VERSION" "$have" | sort -V | sed -n 1p) == "$GO_VERSION" ]]
}

install_go() {
  local arch file tmp
  case $(dpkg --print-architecture) in
    amd64) arch=amd64 ;;
    arm64) arch=arm64 ;;
    armhf) arch=armv6l ;;
    i386) arch=386 ;;
    ppc64el) arch=ppc64le ;;
    s390x) arch=s390x ;;
    *) die "no Go download for architecture $(dpkg --print-architecture)" ;;
  esac
  file="go${GO_VERSION}.linux-${arch}.tar.gz"
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand $tmp now: it is local to this function
  trap "rm -rf -- '$tmp'" EXIT

  log "downloading $file"
  if ! curl -fsSL --retry 3 -o "$tmp/$file" "https://go.dev/dl/$file" ||
    ! curl -fsSL --retry 3 -o "$tmp/$file.sha256" "https://dl.google.com/go/$file.sha256"; then
    die "step go download failed for $file: install Go $GO_VERSION or newer in /usr/local/go by hand (https://go.dev/doc/install), then run again"
  fi
  (cd "$tmp" && printf '%s  %s\n' "$(tr -d '[:space:]' <"$file.sha256")" "$file" | sha256sum --check --quiet) ||
    die "step go download: checksum mismatch for $file"

  rm -rf /usr/local/go
  tar -C /usr/local -xzf "$tmp/$file"
  log "installed $(/usr/local/go/bin/go version)"
}

if go_is_current; then
  log "go present ($(cd / && GOTOOLCHAIN=local go env GOVERSION), pinned $GO_VERSION)"
else
  install_go
  go_is_current || die "go in PATH is still older than $GO_VERSION: $(command -v go)"
fi
