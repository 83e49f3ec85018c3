#!/usr/bin/env bash
# scripts/versions.sh: the tool versions the scripts install, pinned in one
# place so every host and CI run gets the same toolchain. Sourced by lib.sh.
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file

# Go toolchain installed into /usr/local/go by provision-common.sh when `go`
# is missing or older than this.
GO_VERSION=1.26.8

# PM2 process manager installed globally with npm by provision-common.sh when
# `pm2` is missing (6.x supports Node.js >= 16).
PM2_VERSION=6.0.8
