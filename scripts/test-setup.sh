#!/usr/bin/env bash
# scripts/test-setup.sh: prepare this machine for `make test`: common tools
# (Go, C toolchain for -race), PostgreSQL with the inventory, billing and test
# roles, and RabbitMQ with its users (the broker integration tests connect as
# TEST_RABBITMQ_USER), and Chromium for the headless check of the API docs
# page (make docs-test), and shellcheck. Installs what is missing, starts
# what is stopped.
# Why: the Go tests run against a real PostgreSQL and RabbitMQ; this script is
# the first step of `make test` and of CI, and running it again is harmless.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

bash "$here/provision-common.sh"
bash "$here/provision-postgres.sh" inventory billing test
bash "$here/provision-rabbitmq.sh"
# Test tools from Debian: shellcheck (make shellcheck) and chromium (make
# docs-test, the /docs page in headless mode). vagrant-validate.sh and
# test-topology.sh install their own, so each target also runs alone.
apt_install shellcheck chromium
# promtool (make promtool) comes with Debian's prometheus package.
apt_install prometheus
