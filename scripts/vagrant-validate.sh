#!/usr/bin/env bash
# scripts/vagrant-validate.sh: check the Vagrantfile with `vagrant validate`
# (its .env parsing and required keys included), installing Debian's vagrant
# package first when vagrant is missing. Without VirtualBox (CI, containers)
# Vagrant refuses to load the VirtualBox provider, so validation then runs
# with --ignore-provider and says so.
# Why: `make test` catches a broken Vagrantfile on machines that cannot boot
# VMs. Vagrant's version check is switched off: no call home from CI.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

command -v vagrant >/dev/null || apt_install vagrant
export VAGRANT_CHECKPOINT_DISABLE=1

cd "$REPO_ROOT"
log "$(vagrant --version)"
if command -v VBoxManage >/dev/null; then
  vagrant validate
else
  log "VirtualBox not installed: validating without the provider settings (--ignore-provider)"
  vagrant validate --ignore-provider
fi
